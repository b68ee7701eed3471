import socket, sys, time, os, resource
PORT=int(sys.argv[1]); PID=int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE,(20000,20000))
def rss(): return int(open(f'/proc/{PID}/statm').read().split()[1])*4
def conn():
    s=socket.create_connection(('127.0.0.1',PORT)); s.settimeout(5); return s
def ping():
    s=conn(); s.sendall(b'PING\r\n'); r=s.recv(100); s.close(); return r
def rd(s,t=1):
    s.settimeout(t); out=b''
    try:
        while True:
            d=s.recv(65536)
            if not d: return out+b'<CLOSED>'
            out+=d
    except socket.timeout: return out
print('rss0',rss())
# prefill data to verify later
s=conn(); s.sendall(b''.join(b'HSET keep%d f%d v%d\r\n'%(i,i,i) for i in range(200))); time.sleep(0.5); rd(s); s.close()
# 1. many 512MB headers with partial data
socks=[]
for i in range(200):
    s=conn(); s.sendall(b'*3\r\n$4\r\nHSET\r\n$1\r\nk\r\n$536870912\r\n'+b'x'*1000); socks.append(s)
time.sleep(0.5); print('200 x 512MB headers: rss',rss(), ping())
for s in socks: s.close()
# 2. slowloris: byte at a time on 50 conns
socks=[conn() for _ in range(50)]
msg=b'*3\r\n$4\r\nHGET\r\n$6\r\nkeep10\r\n$3\r\nf10\r\n'
for b in range(len(msg)):
    for s in socks: s.sendall(msg[b:b+1])
ok=sum(1 for s in socks if rd(s,0.5)==b'$3\r\nv10\r\n'); print('slowloris byte-by-byte ok',ok,'/50')
for s in socks: s.close()
# 3. oversized value
s=conn()
s.sendall(b'CONFIG GET proto-max-bulk-len\r\nCONFIG GET client-query-buffer-limit\r\nCONFIG GET maxclients\r\nCONFIG GET client-output-buffer-limit\r\n'); print(rd(s))
big=64*1024*1024
hdr=b'*4\r\n$4\r\nHSET\r\n$3\r\nbig\r\n$1\r\nf\r\n$%d\r\n'%big
s.sendall(hdr)
try:
    chunk=b'y'*(1<<20)
    for i in range(64): s.sendall(chunk)
    s.sendall(b'\r\n')
except Exception as e: print('send err',e)
print('64MB value:',rd(s,5)[:200], 'rss',rss())
s.close()
s=conn(); s.sendall(b'HSTRLEN big f\r\n'); print('hstrlen big', rd(s)); s.close()
s=conn(); s.sendall(b'HDEL big f\r\n'); print('hdel', rd(s)); s.close()
# 4. non-reading client: pipeline huge number of HGETALL of a big-ish key
s=conn(); s.sendall(b'HSET bigr f '+b'z'*100000+b'\r\n'); print(rd(s))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
req=b'HGETALL bigr\r\n'*2000
t=time.time()
try:
    s.settimeout(5)
    for i in range(20): s.sendall(req)
except Exception as e: print('nonreader send stopped:',e)
time.sleep(2); print('non-reader: rss',rss(), ping())
s.close(); time.sleep(1); print('after close rss',rss())
# 5. thousands of connections
socks=[]; err=None
for i in range(3000):
    try: socks.append(conn())
    except Exception as e: err=e; break
print('opened',len(socks),'err',err)
# write to all and read
for s in socks[:3000:100]: s.sendall(b'PING\r\n')
print('sample replies', set(rd(s,2)[:40] for s in socks[:3000:100]))
print('rss with conns',rss(), ping())
for s in socks: s.close()
time.sleep(1)
# verify data
s=conn(); s.sendall(b''.join(b'HGET keep%d f%d\r\n'%(i,i) for i in range(200))); time.sleep(0.5); out=rd(s)
print('prefill intact', out==b''.join(b'$%d\r\nv%d\r\n'%(len(str(i))+1,i) for i in range(200)))
print('rss end',rss())
