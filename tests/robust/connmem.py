"""connmem.py - memory ctxd (or redis-server) holds for connections (round 23).

usage: connmem.py CTXD|redis MODE N [SETTLE_SECONDS]

Starts the server (durability none, one loop), opens N connections that each do
MODE once and then stay idle, and prints the RSS grown per connection 1 s later
and SETTLE_SECONDS later (jemalloc gives freed pages back over 30 s). Modes:
  ping     one PING
  big      HSET of a 900 KB value, HGET it back, DEL
  args     HDEL of 200,000 fields
  multi    MULTI, 50,000 PINGs, DISCARD
  partial  40 MB of a 400 MB bulk and no more, at maxmemory-clients 64mb
           (prints how many connections the server closed)
"""
import os, socket, subprocess, sys, time

def rss(pid):
    return int(open(f'/proc/{pid}/statm').read().split()[1]) * 4

def enc(*a):
    out = [b'*%d\r\n' % len(a)]
    for x in a:
        x = x.encode() if isinstance(x, str) else x
        out.append(b'$%d\r\n' % len(x) + x + b'\r\n')
    return b''.join(out)

def read(s, n):
    got = 0
    s.settimeout(30)
    while got < n:
        d = s.recv(1 << 20)
        if not d:
            break
        got += len(d)

def main():
    server, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settle = float(sys.argv[4]) if len(sys.argv) > 4 else 0
    port = 17000 + os.getpid() % 1000
    if server == 'redis':
        p = subprocess.Popen(['redis-server', '--port', str(port), '--save', '', '--appendonly', 'no',
                              '--maxclients', '4000'], stdout=subprocess.DEVNULL)
    else:
        p = subprocess.Popen([server, '--port', str(port), '--durability', 'none', '--loops', '1',
                              '--maxclients', '4000'], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(('127.0.0.1', port)).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        if mode == 'partial':
            c = socket.create_connection(('127.0.0.1', port))
            c.sendall(enc('CONFIG', 'SET', 'maxmemory-clients', '64mb'))
            read(c, 5)
        base, socks = rss(p.pid), []
        for i in range(n):
            s = socket.create_connection(('127.0.0.1', port))
            socks.append(s)
            if mode == 'ping':
                s.sendall(b'PING\r\n'); read(s, 7)
            elif mode == 'big':
                s.sendall(enc('HSET', 'k%d' % i, 'f', b'z' * 900000)); read(s, 4)
                s.sendall(enc('HGET', 'k%d' % i, 'f')); read(s, 900011)
                s.sendall(enc('DEL', 'k%d' % i)); read(s, 4)
            elif mode == 'args':
                s.sendall(enc('HDEL', 'nokey', *[b'%d' % j for j in range(200000)])); read(s, 4)
            elif mode == 'multi':
                s.sendall(b'MULTI\r\n' + b'PING\r\n' * 50000 + b'DISCARD\r\n'); read(s, 10 + 9 * 50000)
            elif mode == 'partial':
                try:
                    s.sendall(b'*4\r\n$4\r\nHSET\r\n$2\r\npk\r\n$1\r\nf\r\n$%d\r\n' % (400 << 20))
                    for _ in range(40):
                        s.sendall(b'x' * (1 << 20))
                except OSError:
                    pass
        time.sleep(1)
        one = rss(p.pid)
        time.sleep(settle)
        later = rss(p.pid)
        print(f'{server} {mode} N={n}: {(one - base) / n:.1f} KB/conn after 1 s, '
              f'{(later - base) / n:.1f} KB/conn after {1 + settle:g} s')
        if mode == 'partial':
            closed = 0
            for s in socks:
                s.setblocking(False)
                try:
                    closed += s.recv(1) == b''
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
            print(f'  {closed} of {n} connections closed by the server')
    finally:
        p.terminate()
        p.wait()

main()
