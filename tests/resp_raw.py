"""resp_raw.py - a raw RESP client for the Python tests and probes (round 12,
folded from the copies in tests/robust/diff_resp.py and
tests/server/test_review11_fdlimit.py; tests/robust/ctxfuzz.py uses enc).

Requests are encoded by hand and each reply is read whole as the raw bytes
the server sent (RESP2 and RESP3 types), so a test compares exactly what
came over the wire. A script elsewhere under tests/ imports it with

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
    from resp_raw import Conn, enc
"""
import socket


def enc(*args):
    """One request: an array of bulk strings (str, int and bytes taken)."""
    out = b'*%d\r\n' % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b'$%d\r\n%s\r\n' % (len(a), a)
    return out


def shape(raw):
    """The first byte of each line of a raw reply: its shape, for replies
    whose content depends on the server."""
    return bytes(ch for i, ch in enumerate(raw) if i == 0 or raw[i - 1:i] == b'\n')


class Conn:
    """A connection to 127.0.0.1:port. reply() reads one whole reply as raw
    bytes and raises EOFError if the server closes before its end."""

    def __init__(self, port, timeout=5):
        self.s = socket.create_connection(('127.0.0.1', port))
        self.s.settimeout(timeout)
        self.buf = b''

    def fill(self):
        """One recv into buf (EOFError when the server closed)."""
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError
        self.buf += d

    def line(self):
        """The next line, without its CRLF."""
        while b'\r\n' not in self.buf:
            self.fill()
        i = self.buf.index(b'\r\n')
        l, self.buf = self.buf[:i], self.buf[i + 2:]
        return l

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        b, self.buf = self.buf[:n], self.buf[n:]
        return b

    def reply(self):
        """One reply as raw bytes (aggregates with all their elements)."""
        l = self.line()
        t = l[:1]
        if t in (b'$', b'=', b'!'):
            n = int(l[1:])
            return l + b'\r\n' + (self.take(n + 2) if n >= 0 else b'')
        if t in (b'*', b'~', b'>', b'%', b'|'):
            n = int(l[1:])
            if n < 0:
                return l + b'\r\n'
            k = n * 2 if t in (b'%', b'|') else n
            return l + b'\r\n' + b''.join(self.reply() for _ in range(k))
        return l + b'\r\n'

    def send(self, *args):
        self.s.sendall(enc(*args))

    def cmd(self, *args):
        """Send one request and read its reply."""
        self.send(*args)
        return self.reply()

    def close(self):
        self.s.close()
