import socket, random, sys, time, os
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from resp_raw import enc
PORT=int(sys.argv[1]); random.seed(int(sys.argv[2]))
cmds="ctx.create ctx.current ctx.del ctx.diff ctx.drop ctx.expire ctx.get ctx.history ctx.list ctx.point ctx.points ctx.resolve ctx.restore ctx.set ctx.stats ctx.sync ctx.tdel ctx.tget ctx.track ctx.tset ctx.untrack ctx.unwatch ctx.use ctx.verify ctx.version ctx.watch hset hget hdel hgetall hscan hrandfield hincrby hincrbyfloat del exists ttl expire persist multi exec discard watch unwatch scan keys type reset client".split()
words=[b'k1',b'k2',b'.',b'',b'-1',b'0',b'1',b'2',b'99999999999999999999',b'-9223372036854775808',b'18446744073709551615',b'VERSION',b'LATEST',b'LABEL',b'AT',b'PREFIX',b'FROM',b'AFTER',b'COUNT',b'MATCH',b'*',b'f',b'v',b'\x00',b'x'*300,b'@1',b'-30s',b'WITHVALUES',b'NX',b'IF',b'LIMIT',b'1e400',b'nan']
total=0
for conn in range(40):
    s=socket.create_connection(('127.0.0.1',PORT)); s.settimeout(0.3)
    buf=b''
    for i in range(50):
        args=[random.choice(cmds).encode()]+[random.choice(words) for _ in range(random.randint(0,6))]
        buf+=enc(*args); total+=1
    s.sendall(buf)
    t=time.time()
    try:
        while time.time()-t<0.5:
            if not s.recv(1<<16): break
    except Exception: pass
    s.close()
s=socket.create_connection(('127.0.0.1',PORT)); s.sendall(b'PING\r\n'); print('sent',total,'alive:',s.recv(10))
