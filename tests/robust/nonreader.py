import socket, sys, time
PORT=int(sys.argv[1]); PID=int(sys.argv[2])
def rss(): return int(open(f'/proc/{PID}/statm').read().split()[1])*4
def conn():
    s=socket.create_connection(('127.0.0.1',PORT)); s.settimeout(5); return s
def ping():
    s=conn(); s.sendall(b'PING\r\n'); r=s.recv(100); s.close(); return r
v=b'z'*1000000
s=conn(); s.sendall(b'*4\r\n$4\r\nHSET\r\n$4\r\nbigr\r\n$1\r\nf\r\n$%d\r\n'%len(v)+v+b'\r\n'); print(s.recv(100)); 
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
req=b'HGETALL bigr\r\n'*100
sent=0; t0=time.time()
try:
    s.settimeout(3)
    while time.time()-t0<20:
        s.sendall(req); sent+=100
except Exception as e: print('non-reader send stopped after',sent,'requests:',e)
print('non-reader: rss KB',rss(), ping())
time.sleep(3); print('later rss KB',rss())
try:
    s.settimeout(1); n=0
    while True:
        d=s.recv(1<<20)
        if not d: print('closed by server after',n,'bytes'); break
        n+=len(d)
except Exception as e: print('read',n,e)
s.close(); time.sleep(1); print('after close rss KB',rss(), ping())
