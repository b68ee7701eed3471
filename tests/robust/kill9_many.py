#!/usr/bin/python3
"""kill9_many.py - kill -9 of ctxd (durability always) under many writing
clients, cycle after cycle; after each restart every acknowledged write
must be there (round 11, r11-review).

Usage: /usr/bin/python3 kill9_many.py CTXD CYCLES PORT DIR [CLIENTS]

Each of CLIENTS threads (default 16) owns KEYS contexts and keeps, per
context, the state its acknowledged replies imply, and the state after its
one write in flight (sent, no reply yet: it may or may not have been
applied when the server died). Writes: HSET of a new field (single and
several pairs), HINCRBY, HDEL, DEL, MULTI/EXEC of three commands on one
context, non-transactional pipelines of HSET/HINCRBY to several of its
contexts (every reply checked), CTX.CREATE of a fresh context. Every kill
falls at a random moment (0.05-1.5 s after the start). After the restart
each context must hold exactly its acknowledged state, or the state of
its write in flight (so a MULTI's three changes are all there or none). A clean SIGTERM
at the end of each cycle must exit 0.

K9_DURABILITY=batch runs ctxd with --durability batch: a kill may lose the
last window of acknowledged writes, so each context may hold any state it
had since the last clean stop, but still a prefix of each client's writes
(a client's later write there, its earlier ones there too: nothing out of
order) and never half a MULTI.

Prints one line per cycle and a summary; exit status 1 on any defect.
"""
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import redis

CTXD, CYCLES, PORT, D = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
CLIENTS = int(sys.argv[5]) if len(sys.argv) > 5 else 16
KEYS = 12
DUR = os.environ.get('K9_DURABILITY', 'always')
BATCH = DUR != 'always'
os.makedirs(D, exist_ok=True)


def start():
    log = open(D + '/log', 'a')
    p = subprocess.Popen([CTXD, '--port', str(PORT), '--dir', D + '/data',
                          '--durability', DUR, '--loops', '2'],
                         stdout=log, stderr=log)
    for _ in range(500):
        try:
            socket.create_connection(('127.0.0.1', PORT)).close()
            return p
        except OSError:
            if p.poll() is not None:
                raise SystemExit('ctxd exited at start, see ' + D + '/log')
            time.sleep(0.02)
    raise SystemExit('ctxd did not start')


class Key:
    """One context: its acknowledged state and its possible states."""

    def __init__(self, name):
        self.name = name
        self.acked = {}       # field -> bytes; {} = absent
        self.pending = None   # the state if the write in flight was applied
        self.pending_n = 0    # its number in its client's writes
        self.hist = [(0, {})]  # batch: (write number, state) since the last clean stop

    def options(self):
        return [self.acked] + ([self.pending] if self.pending is not None else [])

    def cuts(self, got, inflight):
        """batch: the write numbers c (of its client) such that the state
        after the client's first c writes is got, as [lo, hi) ranges."""
        h = self.hist + ([(self.pending_n, self.pending)] if self.pending is not None else [])
        out = []
        for i, (n, st) in enumerate(h):
            if st == got:
                out.append((n, h[i + 1][0] if i + 1 < len(h) else inflight + 1))
        return out


class Worker:
    def __init__(self, tid):
        self.tid = tid
        self.keys = [Key(f'k9:{tid}:{i}') for i in range(KEYS)]
        self.seq = 0
        self.ops = 0
        self.fresh = 0
        self.n = 0  # writes sent (numbers them)

    def pend(self, k, new):
        self.n += 1
        k.pending, k.pending_n = new, self.n

    def ack(self, k, new):
        k.acked, k.pending = new, None
        if BATCH:
            k.hist.append((k.pending_n, new))

    def nextval(self):
        self.seq += 1
        return f'{self.tid}.{self.seq}.' + 'x' * random.randint(0, 200)

    def run(self, stop):
        r = redis.Redis(port=PORT, socket_timeout=10)
        try:
            while not stop.is_set():
                self.one(r)
                self.ops += 1
        except (redis.ConnectionError, redis.TimeoutError, ConnectionResetError,
                BrokenPipeError, OSError):
            pass  # the server died: the write in flight stays pending
        except redis.ResponseError as e:
            print(f'client {self.tid}: unexpected error reply {e}')
            self.error = str(e)

    def one(self, r):
        op = random.randrange(8)
        k = random.choice(self.keys)
        new = dict(k.acked)
        if op == 0:  # HSET one new field
            f, v = f'f{self.seq}', self.nextval()
            new[f] = v.encode()
            self.pend(k, new)
            n = r.hset(k.name, f, v)
            assert n == 1, (k.name, n)
        elif op == 1:  # HSET several pairs (some overwrite)
            m = {}
            for _ in range(random.randint(2, 6)):
                old = [x for x in new if x != 'cnt']
                f = random.choice(old) if old and random.random() < .3 else f'g{self.seq}'
                m[f] = self.nextval()
            for f, v in m.items():
                new[f] = v.encode()
            self.pend(k, new)
            want = sum(1 for f in m if f not in k.acked)
            n = r.hset(k.name, mapping=m)
            assert n == want, (k.name, n, want)
        elif op == 2:  # HINCRBY
            c = int(new.get('cnt', b'0')) + 1
            new['cnt'] = str(c).encode()
            self.pend(k, new)
            n = r.hincrby(k.name, 'cnt', 1)
            assert n == c, (k.name, n, c)
        elif op == 3 and new:  # HDEL one field
            f = random.choice(list(new))
            del new[f]
            self.pend(k, new)
            assert r.hdel(k.name, f) == 1
        elif op == 4 and random.random() < .3:  # DEL
            new = {}
            self.pend(k, new)
            n = r.delete(k.name)
            assert n == (1 if k.acked else 0), (k.name, n)
        elif op == 5:  # MULTI/EXEC: a, cnt+1, b together
            v = self.nextval()
            c = int(new.get('cnt', b'0')) + 1
            new.update({'a': v.encode(), 'b': v.encode(), 'cnt': str(c).encode()})
            self.pend(k, new)
            p = r.pipeline(transaction=True)
            p.hset(k.name, 'a', v)
            p.hincrby(k.name, 'cnt', 1)
            p.hset(k.name, 'b', v)
            res = p.execute()
            assert res[1] == c, (k.name, res, c)
        elif op == 6:  # a pipeline (no transaction) over several keys
            ks = random.sample(self.keys, random.randint(2, 5))
            news = []
            p = r.pipeline(transaction=False)
            for kk in ks:
                nn = dict(kk.acked)
                if random.random() < .5:
                    f, v = f'p{self.seq}', self.nextval()
                    nn[f] = v.encode()
                    p.hset(kk.name, f, v)
                else:
                    c = int(nn.get('cnt', b'0')) + 1
                    nn['cnt'] = str(c).encode()
                    p.hincrby(kk.name, 'cnt', 1)
                self.pend(kk, nn)
                news.append(nn)
            res = p.execute()
            for kk, nn in zip(ks, news):
                self.ack(kk, nn)
            return
        else:  # CTX.CREATE of a fresh context with a field, then HSET
            self.fresh += 1
            name = f'k9:{self.tid}:fresh{self.fresh}:{self.seq}'
            nk = Key(name)
            self.keys.append(nk)
            nk.hist = [(0, {})]  # absent (an empty hash) before its create
            self.pend(nk, {'init': b'1'})
            if not os.environ.get('K9_REDIS'):  # (checking the script on Redis)
                r.execute_command('CTX.CREATE', name)
            r.hset(name, 'init', '1')
            self.ack(nk, {'init': b'1'})
            if len(self.keys) > KEYS * 3:
                self.keys.pop(KEYS)  # stop tracking an old fresh one
            return
        self.ack(k, new)


def verify(workers, cycle):
    r = redis.Redis(port=PORT, socket_timeout=30)
    bad = checked = 0
    for w in workers:
        ranges = [(0, w.n + 1)]  # batch: the cuts of w's writes all its keys allow
        for k in w.keys:
            got = {f.decode(): v for f, v in r.hgetall(k.name).items()}
            checked += 1
            if BATCH:
                cs = k.cuts(got, w.n)
                ranges = [(max(a, c), min(b, d)) for a, b in ranges for c, d in cs
                          if max(a, c) < min(b, d)]
                if not cs:
                    bad += 1
                    print(f'cycle {cycle} DEFECT {k.name}: got {sorted(got)[:8]} '
                          f'never a state of it since the last clean stop')
                elif not ranges:
                    bad += 1
                    print(f'cycle {cycle} DEFECT {w.tid}: {k.name} out of order: '
                          f'no prefix of its client\'s writes gives every state seen')
                    ranges = [(0, w.n + 1)]
                k.acked, k.pending, k.hist = got, None, [(w.n, got)]
                continue
            opts = k.options()
            if got not in opts:
                bad += 1
                lost = {f for f in k.acked if got.get(f) != k.acked[f]}
                print(f'cycle {cycle} DEFECT {k.name}: got {sorted(got)[:8]} '
                      f'acked {sorted(k.acked)[:8]} differing {sorted(lost)[:8]}')
            k.acked, k.pending = got, None
    return bad, checked


def main():
    workers = [Worker(t) for t in range(CLIENTS)]
    total_bad = total_ops = 0
    for cycle in range(CYCLES):
        p = start()
        stop = threading.Event()
        before = sum(w.ops for w in workers)
        ts = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
        for t in ts:
            t.start()
        time.sleep(random.uniform(0.05, 1.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
        stop.set()
        for t in ts:
            t.join()
        ops = sum(w.ops for w in workers) - before
        total_ops += ops
        p = start()
        bad, checked = verify(workers, cycle)
        total_bad += bad
        p.send_signal(signal.SIGTERM)
        rc = p.wait()
        if rc != 0:
            print(f'cycle {cycle}: SIGTERM exit status {rc}')
            total_bad += 1
        print(f'cycle {cycle}: {ops} acknowledged writes, {checked} contexts checked, '
              f'{bad} defects', flush=True)
    print(f'SUMMARY cycles {CYCLES} clients {CLIENTS} acknowledged writes {total_ops} '
          f'defects {total_bad}')
    sys.exit(1 if total_bad else 0)


main()
