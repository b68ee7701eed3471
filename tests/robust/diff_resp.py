#!/usr/bin/python3
"""diff_resp.py - the same requests to ctxd and to redis-server, raw replies
compared byte for byte, in RESP2 and in RESP3 (round 11, r11-review).

Usage: /usr/bin/python3 diff_resp.py CTXD_PORT REDIS_PORT

Each script below runs on fresh connections to both servers (after
FLUSHALL on both), once after HELLO 2
and once after HELLO 3; a reply that differs is printed with both sides.
Replies whose content depends on the server (HELLO's fields, INFO,
COMMAND, CLIENT LIST, ids, random picks) are compared by shape only (the
first byte of each element). Prints a summary; the differences are for a
human to judge (ctxd documents some: docs/protocol.md).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from resp_raw import Conn, shape  # noqa: E402

CP, RP = int(sys.argv[1]), int(sys.argv[2])


SHAPE_ONLY = {'HELLO', 'INFO', 'COMMAND', 'CLIENT', 'HRANDFIELD', 'TIME', 'SCAN', 'KEYS',
              'PTTL', 'CONFIG'}

# Each script: a list of commands (tuples); strings are split on spaces.
SCRIPTS = [
    # hashes
    ['HSET h a 1 b 2', 'HGET h a', 'HGET h zz', 'HGET nokey a', 'HMGET h a zz b', 'HMGET nokey a',
     'HGETALL h', 'HGETALL nokey', 'HKEYS h', 'HVALS h', 'HKEYS nokey', 'HLEN h', 'HLEN nokey',
     'HEXISTS h a', 'HEXISTS h zz', 'HSTRLEN h a', 'HSTRLEN h zz', 'HSETNX h a 9', 'HSETNX h c 3',
     'HDEL h a zz', 'HDEL nokey a', 'HSCAN h 0', 'HSCAN nokey 0', 'HSCAN h 0 MATCH b* COUNT 10',
     'HSCAN h x', 'HSET h', 'HSET h a', 'HSET h a 1 b', 'HMSET h x 1', 'HGET h', 'HDEL h',
     'HRANDFIELD nokey', 'HRANDFIELD nokey 2', 'HRANDFIELD h 2 WITHVALUES', 'HRANDFIELD h -3',
     'HRANDFIELD h 0', 'HRANDFIELD h 1 WITHVALUES'],
    ['HSET n i 10 f 1.5 s abc big 9223372036854775807', 'HINCRBY n i 5', 'HINCRBY n i -20',
     'HINCRBY n new 3', 'HINCRBY n s 1', 'HINCRBY n f 1', 'HINCRBY n i x', 'HINCRBY n big 1',
     'HINCRBY nokey2 i 1', 'HINCRBYFLOAT n f 2.25', 'HINCRBYFLOAT n f x', 'HINCRBYFLOAT n s 1',
     'HINCRBYFLOAT n i 0.5', 'HINCRBYFLOAT n f 1e400', 'HINCRBYFLOAT n g 3', 'HINCRBYFLOAT n f -inf',
     'HINCRBYFLOAT n f 5.0e3', 'HGETALL n', 'DEL nokey2'],
    # keys
    ['HSET k1 f v', 'HSET k2 f v', 'EXISTS k1 k2 k1 nokey', 'EXISTS nokey', 'TYPE k1', 'TYPE nokey',
     'TTL k1', 'TTL nokey', 'PTTL nokey', 'EXPIRE k1 100', 'TTL k1', 'EXPIRE nokey 10',
     'EXPIRE k1 100 NX', 'EXPIRE k1 200 XX', 'EXPIRE k1 50 GT', 'EXPIRE k1 50 LT', 'TTL k1',
     'EXPIRE k1 x', 'EXPIRE k1 10 BOGUS', 'PERSIST k1', 'PERSIST k1', 'PERSIST nokey', 'TTL k1',
     'PEXPIRE k2 100000', 'PERSIST k2', 'DEL k1 k2 nokey', 'DEL nokey', 'UNLINK k1', 'TOUCH k1',
     'DBSIZE', 'EXPIRE k3', 'TTL'],
    # scan edges (round 12): cursor syntax, never-given cursors, COUNT, absent keys
    ['HSET s a 1', 'SCAN -1', 'SCAN +0', 'SCAN 00', 'SCAN x', 'SCAN 1.0', 'SCAN 0 COUNT 0',
     'SCAN 0 COUNT -1', 'SCAN 0 COUNT +1', 'SCAN 0 MATCH s*', 'SCAN 0 TYPE HASH', 'SCAN 0 TYPE zz',
     'HSCAN nokey 0 COUNT 0', 'HSCAN nokey 0 BOGUS', 'HSCAN nokey -1', 'HSCAN nokey x',
     'HSCAN s 0 COUNT 0', 'HSCAN s 0 COUNT -1', 'HSCAN s x', 'HSCAN s +0', 'HSCAN s 0 MATCH a*',
     'HSCAN s 0 TYPE hash'],
    # wrong types and unknown commands
    ['HSET w f v', 'GET w', 'SET w x', 'LPUSH w x', 'SADD w x', 'ZADD w 1 x', 'INCR w', 'APPEND w x',
     'LRANGE w 0 -1', 'SMEMBERS w', 'GET nokey', 'FOO', 'FOO bar baz', 'hget w f', 'HgEt w f'],
    # connection
    ['PING', 'PING hello', 'PING a b', 'ECHO hi', 'ECHO', 'SELECT 0', 'SELECT 1', 'SELECT x',
     'CLIENT SETNAME myname', 'CLIENT GETNAME', 'CLIENT SETNAME', 'CLIENT SETINFO LIB-NAME x',
     'CLIENT SETINFO LIB-VER 1.0', 'CLIENT SETINFO FOO x', 'CLIENT NO-EVICT on', 'CLIENT BOGUS',
     'HELLO 4', 'HELLO abc', 'HELLO 3 SETNAME', 'AUTH x', 'AUTH a b', 'CONFIG GET maxclients',
     'CONFIG GET save', 'CONFIG GET appendonly', 'CONFIG GET nosuchthing', 'CONFIG BOGUS',
     'COMMAND COUNT', 'DBSIZE', 'QUIT'],
    # transactions
    ['MULTI', 'HSET t a 1', 'HGET t a', 'HINCRBY t c 1', 'EXEC', 'EXEC', 'DISCARD', 'MULTI', 'MULTI',
     'DISCARD', 'MULTI', 'WATCH t', 'HGET t a', 'EXEC', 'MULTI', 'FOO', 'HGET t a', 'EXEC', 'MULTI',
     'HSET t', 'EXEC', 'MULTI', 'EXEC', 'WATCH t', 'UNWATCH', 'WATCH t nokey', 'MULTI', 'HGET t a',
     'EXEC', 'MULTI', 'HINCRBY t a x', 'HSET t z 1', 'EXEC', 'HGETALL t'],
]


def split(c):
    return c.split(' ') if isinstance(c, str) else list(c)


def reset(port, keys):
    c = Conn(port)
    c.cmd('FLUSHALL')  # on ctxd too (round 12): keys left by other scripts changed SCAN, DBSIZE
    c.s.close()


def run(port, script, proto):
    c = Conn(port)
    c.cmd('HELLO', str(proto))
    out = []
    for cmd in script:
        args = split(cmd)
        try:
            out.append(c.cmd(*args))
        except EOFError:
            out.append(b'<closed>')
            break
    c.s.close()
    return out


def main():
    diffs = total = 0
    for proto in (2, 3):
        for script in SCRIPTS:
            keys = {split(c)[1] for c in script if len(split(c)) > 1}
            reset(CP, keys)
            reset(RP, keys)
            a = run(CP, script, proto)
            b = run(RP, script, proto)
            for cmd, x, y in zip(script, a, b):
                total += 1
                name = split(cmd)[0].upper()
                if name in SHAPE_ONLY:
                    x2, y2 = shape(x), shape(y)
                else:
                    x2, y2 = x, y
                if x2 != y2:
                    diffs += 1
                    print(f'RESP{proto} {cmd!r}\n  ctxd:  {x[:300]!r}\n  redis: {y[:300]!r}')
    print(f'{total} replies compared, {diffs} differ')


main()
