#!/usr/bin/python3
"""loop_held.py - how long one big replace holds ctxd's event loop (round 11).

Usage: loop_held.py CTXD_A CTXD_B [rounds] [fields]

Starts each ctxd in turn (A B A B ..., `rounds` times each) with one event
loop (--loops 1) and a fresh data directory (durability always). Per round
and case, client 1 fills "big" with `fields` fields, then client 2 sends PING
back to back (one outstanding) while client 1 runs the case; the longest
PING reply time that overlapped the case is how long the loop was held (a
PING is answered on the loop, never waits for a sync). Cases:

  exec   MULTI; DEL big; HSET big f v; EXEC
  pipe   DEL big + HSET big f v, pipelined in one write
  del    DEL big, then (after its reply) HSET big f v

Also reported: client 1's own time for the case, and client 2's longest
HSET reply time in a second pass (HSET of its own key back to back instead
of PING: a write waits for its sync, so this shows a held log flusher too).
Prints one line per round and the medians per binary and case.
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(binary):
    d = tempfile.mkdtemp(prefix="loopheld-")
    port = free_port()
    p = subprocess.Popen([binary, "--port", str(port), "--dir", d, "--loops", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            r = redis.Redis(port=port)
            r.ping()
            return p, d, port
        except Exception:
            time.sleep(0.05)
    raise SystemExit("ctxd did not start: " + binary)


def stop(p, d):
    p.terminate()
    p.wait()
    shutil.rmtree(d, ignore_errors=True)


def fill(r, n):
    pipe = r.pipeline(transaction=False)
    for at in range(0, n, 1000):
        m = {"f%d" % i: "v" for i in range(at, min(n, at + 1000))}
        pipe.hset("big", mapping=m)
    pipe.execute()


def run_case(r, case):
    if case == "exec":
        p = r.pipeline(transaction=True)
        p.delete("big")
        p.hset("big", "f", "v")
        p.execute()
    elif case == "pipe":
        p = r.pipeline(transaction=False)
        p.delete("big")
        p.hset("big", "f", "v")
        p.execute()
    else:
        r.delete("big")
        r.hset("big", "f", "v")


def probe(port, kind, stop_ev, out):
    r = redis.Redis(port=port)
    while not stop_ev.is_set():
        t0 = time.perf_counter()
        if kind == "ping":
            r.ping()
        else:
            r.hset("probe", "x", "1")
        out.append((t0, time.perf_counter()))


def one(port, case, fields, kind):
    r = redis.Redis(port=port)
    fill(r, fields)
    r.hset("probe", "x", "0")
    stop_ev = threading.Event()
    lat = []
    th = threading.Thread(target=probe, args=(port, kind, stop_ev, lat))
    th.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    run_case(r, case)
    t1 = time.perf_counter()
    time.sleep(0.2)
    stop_ev.set()
    th.join()
    over = [b - a for a, b in lat if b >= t0 and a <= t1]
    assert r.hlen("big") == 1
    return (t1 - t0) * 1000, max(over) * 1000 if over else 0.0


def main():
    a, b = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    fields = int(sys.argv[4]) if len(sys.argv) > 4 else 200000
    res = {}
    for rnd in range(rounds):
        for name, binary in (("A", a), ("B", b)):
            p, d, port = start(binary)
            try:
                for case in ("exec", "pipe", "del"):
                    for kind in ("ping", "hset"):
                        own, held = one(port, case, fields, kind)
                        res.setdefault((name, case, kind), []).append((own, held))
                        print("round %d %s %-4s probe %-4s own %8.2f ms  probe max %8.2f ms"
                              % (rnd, name, case, kind, own, held), flush=True)
            finally:
                stop(p, d)
    print("\nmedians (%d rounds, %d fields): case probe  A own / A probe max   B own / B probe max"
          % (rounds, fields))
    for case in ("exec", "pipe", "del"):
        for kind in ("ping", "hset"):
            ra, rb = res[("A", case, kind)], res[("B", case, kind)]
            med = lambda xs, i: statistics.median(x[i] for x in xs)
            print("%-4s %-4s  A %8.2f / %8.2f ms   B %8.2f / %8.2f ms"
                  % (case, kind, med(ra, 0), med(ra, 1), med(rb, 0), med(rb, 1)))


if __name__ == "__main__":
    main()
