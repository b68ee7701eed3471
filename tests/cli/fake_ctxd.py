#!/usr/bin/env python3
"""fake_ctxd.py PORTFILE MODE - a stand-in for ctxd that answers with canned
RESP2 replies, for the ctx CLI's handling of replies a real ctxd does not
send (wrong shapes) and of watch streams that report lost events.

It listens on a free loopback port, writes the port to PORTFILE, and serves
connections one after another until killed. MODE:
  bad      every command gets a reply of the wrong shape (see BAD below)
  lost     CTX.WATCH: +OK, an event, then ctx.lost from revision 10; a
           second CTX.WATCH (FROM 10): an event at 10, a status line and a
           foreign array (both ignored), then ctx.lost from 10 again (the
           CLI must stop: no progress)
  lostlast CTX.WATCH: +OK, then ctx.lost with a last revision (7 to 9)
  garbage  CTX.WATCH: +OK, then bytes that are not RESP
  verify0  CTX.VERIFY: a map whose "ok" is 0
  listloop CTX.LIST: always the same page with a next cursor
"""
import socket
import sys


def bulk(s):
    b = s.encode() if isinstance(s, str) else s
    return b"$%d\r\n%s\r\n" % (len(b), b)


def arr(*items):
    return b"*%d\r\n" % len(items) + b"".join(items)


def num(n):
    return b":%d\r\n" % n


def event(kind, rev, cid, version, fields):
    return arr(bulk("ctx.event"), bulk(kind), num(rev), bulk(cid), num(version),
               arr(*[bulk(f) for f in fields]))


def lost(first, last):
    return arr(bulk("ctx.lost"), num(first), num(last), bulk("FROM %d" % first))


BAD = {
    b"PING": num(1),
    b"INFO": num(1),
    b"CTX.STATS": b"+OK\r\n",
    b"CTX.VERIFY": b"+OK\r\n",
    b"CTX.CREATE": b"+OK\r\n",
    b"CTX.DROP": b"+OK\r\n",
    b"CTX.SET": b"+OK\r\n",
    b"CTX.DEL": b"+OK\r\n",
    b"CTX.POINT": b"+OK\r\n",
    b"CTX.RESTORE": b"+OK\r\n",
    b"CTX.GET": num(3),
    b"CTX.LIST": arr(num(1)),
    b"CTX.POINTS": b"+OK\r\n",
    b"CTX.HISTORY": b"+OK\r\n",
    b"CTX.DIFF": arr(num(1)),
}


def read_command(f):
    """One RESP array of bulk strings from f, as a list of bytes (None at EOF)."""
    line = f.readline()
    if not line:
        return None
    n = int(line[1:].strip())
    args = []
    for _ in range(n):
        ln = int(f.readline()[1:].strip())
        args.append(f.read(ln + 2)[:-2])
    return args


def serve(conn, mode, state):
    f = conn.makefile("rb")
    while True:
        args = read_command(f)
        if args is None:
            return
        name = args[0].upper()
        if name == b"AUTH":
            conn.sendall(b"+OK\r\n")
        elif mode == "bad":
            conn.sendall(BAD.get(name, b"-ERR unknown\r\n"))
        elif mode == "verify0" and name == b"CTX.VERIFY":
            conn.sendall(arr(bulk("ok"), num(0), bulk("problems"), num(1),
                             bulk("nested"), arr(num(1), bulk("x")), bulk("none"),
                             b"$-1\r\n"))
        elif mode == "listloop" and name == b"CTX.LIST":
            conn.sendall(arr(bulk("a"), arr(bulk("a"))))
        elif mode == "lost" and name == b"CTX.WATCH":
            state["watches"] += 1
            conn.sendall(b"+OK\r\n")
            if state["watches"] == 1:
                conn.sendall(event("created", 5, "w:1", 1, ["f"]) + lost(10, 0))
            else:
                conn.sendall(event("committed", 10, "w:1", 2, ["f", "g"]) +
                             b"+ignored\r\n" + arr(bulk("other")) + lost(10, 0))
        elif mode == "lostlast" and name == b"CTX.WATCH":
            conn.sendall(b"+OK\r\n" + lost(7, 9))
        elif mode == "garbage" and name == b"CTX.WATCH":
            conn.sendall(b"+OK\r\n" + b"?garbage\r\n")
        else:
            conn.sendall(b"-ERR not in this fake\r\n")


def main():
    portfile, mode = sys.argv[1], sys.argv[2]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    with open(portfile + ".tmp", "w") as pf:
        pf.write(str(s.getsockname()[1]))
    import os
    os.rename(portfile + ".tmp", portfile)
    state = {"watches": 0}
    while True:
        conn, _ = s.accept()
        try:
            serve(conn, mode, state)
        except (ConnectionError, ValueError):
            pass
        conn.close()


if __name__ == "__main__":
    main()
