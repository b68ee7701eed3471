import socket,sys,time
PORT=int(sys.argv[1])
a=socket.create_connection(('127.0.0.1',PORT)); a.sendall(b'CONFIG SET maxclients 50\r\n'); print(a.recv(100))
socks=[]; replies={}
for i in range(80):
    s=socket.create_connection(('127.0.0.1',PORT)); s.settimeout(2); socks.append(s)
time.sleep(0.3)
for s in socks:
    try:
        s.sendall(b'PING\r\n'); r=s.recv(200)
    except Exception as e: r=repr(e).encode()
    replies[r]=replies.get(r,0)+1
print(replies)
for s in socks: s.close()
time.sleep(0.3)
a.sendall(b'CONFIG SET maxclients 10000\r\nPING\r\n'); time.sleep(0.2); print(a.recv(100))
