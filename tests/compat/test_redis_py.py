#!/usr/bin/python3
"""test_redis_py.py - redis-py (Debian's python3-redis, 4.3.x) against ctxd.

Run by with_ctxd.sh, which exports CTXD_PORT (an open ctxd) and CTXD_PASS_PORT
(one started with --requirepass "$CTXD_PASS"). Must run under /usr/bin/python3:
a pyenv python does not see Debian's packages. Each test uses keys of its own
(prefixed with the test's name), so the tests do not depend on each other's
order. redis-py 4.3 speaks RESP2 only (protocol=3 came in redis-py 5); when a
newer redis-py is found the RESP3 test runs too.
"""
import os
import sys
import threading
import unittest

try:
    import redis
except ImportError:
    print("test_redis_py: redis-py missing (scripts/deps.sh installs python3-redis)")
    sys.exit(1)

PORT = int(os.environ.get("CTXD_PORT", "7379"))
PASS_PORT = int(os.environ.get("CTXD_PASS_PORT", "0"))
PASSWORD = os.environ.get("CTXD_PASS", "")
MAJOR = int(redis.__version__.split(".")[0])
# with_ctxd.sh CTXD_COMPAT_REDIS=1 runs the suite against redis-server to check
# its expectations; the few ctxd-specific assertions are left out there.
ON_CTXD = os.environ.get("CTXD_COMPAT_REDIS") != "1"


def client(**kw):
    kw.setdefault("decode_responses", True)
    return redis.Redis(host="127.0.0.1", port=kw.pop("port", PORT), **kw)


class Hashes(unittest.TestCase):
    def setUp(self):
        self.r = client()
        self.k = "py:" + self.id().rsplit(".", 1)[-1]
        self.r.delete(self.k)

    def tearDown(self):
        self.r.close()

    def test_ping_echo(self):
        self.assertIs(self.r.ping(), True)
        self.assertEqual(self.r.echo("hi there"), "hi there")

    def test_hset_hget_hgetall(self):
        r, k = self.r, self.k
        self.assertEqual(r.hset(k, "a", "1"), 1)
        self.assertEqual(r.hset(k, mapping={"b": 2, "c": 3.5, "a": "x"}), 2)
        self.assertEqual(r.hget(k, "a"), "x")
        self.assertIsNone(r.hget(k, "nope"))
        self.assertIsNone(r.hget(k + ":absent", "a"))
        self.assertEqual(r.hgetall(k), {"a": "x", "b": "2", "c": "3.5"})
        self.assertEqual(r.hgetall(k + ":absent"), {})
        self.assertEqual(r.hmget(k, ["a", "zz", "b"]), ["x", None, "2"])
        self.assertEqual(r.hmget(k, "c", "a"), ["3.5", "x"])
        self.assertEqual(r.hsetnx(k, "a", "no"), 0)  # an int in 4.3, a bool later
        self.assertEqual(r.hsetnx(k, "d", "4"), 1)
        self.assertEqual(r.hstrlen(k, "a"), 1)

    def test_binary_values(self):
        r = client(decode_responses=False)
        blob = bytes(range(256)) + b"\r\n$3\r\n*1\r\n"
        self.assertEqual(r.hset(self.k, b"f\x00\xff", blob), 1)
        self.assertEqual(r.hget(self.k, b"f\x00\xff"), blob)
        self.assertEqual(r.hgetall(self.k), {b"f\x00\xff": blob})
        self.assertEqual(r.hset(self.k, "empty", ""), 1)
        self.assertEqual(r.hget(self.k, "empty"), b"")
        r.close()

    def test_hdel_hlen_hexists_hkeys_hvals(self):
        r, k = self.r, self.k
        r.hset(k, mapping={"a": 1, "b": 2, "c": 3})
        self.assertEqual(r.hlen(k), 3)
        self.assertIs(r.hexists(k, "a"), True)
        self.assertIs(r.hexists(k, "zz"), False)
        self.assertEqual(sorted(r.hkeys(k)), ["a", "b", "c"])
        self.assertEqual(sorted(r.hvals(k)), ["1", "2", "3"])
        self.assertEqual(r.hdel(k, "a", "zz"), 1)
        self.assertEqual(r.hlen(k), 2)
        self.assertEqual(r.hdel(k, "b", "c"), 2)
        # The last field gone: the key no longer exists, as in Redis.
        self.assertEqual(r.hlen(k), 0)
        self.assertEqual(r.exists(k), 0)
        self.assertEqual(r.type(k), "none")
        self.assertEqual(r.hkeys(k), [])

    def test_hincrby_hincrbyfloat(self):
        r, k = self.r, self.k
        self.assertEqual(r.hincrby(k, "n"), 1)
        self.assertEqual(r.hincrby(k, "n", 41), 42)
        self.assertEqual(r.hincrby(k, "n", -50), -8)
        self.assertEqual(r.hincrbyfloat(k, "f", 1.5), 1.5)
        self.assertAlmostEqual(r.hincrbyfloat(k, "f", 0.1), 1.6)
        self.assertEqual(r.hget(k, "f"), "1.6")
        self.assertEqual(r.hincrbyfloat(k, "n", 0.5), -7.5)
        r.hset(k, "s", "abc")
        with self.assertRaisesRegex(redis.ResponseError, "not an integer"):
            r.hincrby(k, "s", 1)
        with self.assertRaisesRegex(redis.ResponseError, "not a float"):
            r.hincrbyfloat(k, "s", 1.0)
        r.hset(k, "big", str(2**63 - 1))
        with self.assertRaisesRegex(redis.ResponseError, "overflow"):
            r.hincrby(k, "big", 1)

    def test_hscan_iter(self):
        r, k = self.r, self.k
        want = {"f%03d" % i: str(i) for i in range(250)}
        r.hset(k, mapping=want)
        self.assertEqual(dict(r.hscan_iter(k)), want)
        self.assertEqual(dict(r.hscan_iter(k, count=7)), want)
        got = dict(r.hscan_iter(k, match="f1*", count=50))
        self.assertEqual(got, {f: v for f, v in want.items() if f.startswith("f1")})
        cursor, page = r.hscan(k, 0, count=1000)
        self.assertEqual(cursor, 0)
        self.assertEqual(page, want)
        self.assertEqual(r.hscan(k + ":absent", 0), (0, {}))

    def test_hrandfield(self):
        r, k = self.r, self.k
        self.assertIsNone(r.hrandfield(k))
        r.hset(k, mapping={"a": 1, "b": 2, "c": 3})
        self.assertIn(r.hrandfield(k), ("a", "b", "c"))
        two = r.hrandfield(k, 2)
        self.assertEqual(len(set(two)), 2)
        self.assertEqual(sorted(r.hrandfield(k, 10)), ["a", "b", "c"])
        self.assertEqual(len(r.hrandfield(k, -7)), 7)
        wv = r.hrandfield(k, 3, withvalues=True)
        self.assertEqual(len(wv), 6)
        self.assertEqual(dict(zip(wv[0::2], wv[1::2])), {"a": "1", "b": "2", "c": "3"})
        self.assertEqual(r.hrandfield(k + ":absent", 3), [])


class Keyspace(unittest.TestCase):
    def setUp(self):
        self.r = client()
        self.p = "pyks:" + self.id().rsplit(".", 1)[-1] + ":"

    def tearDown(self):
        for k in self.r.scan_iter(match=self.p + "*"):
            self.r.delete(k)
        self.r.close()

    def test_exists_delete_type(self):
        r, p = self.r, self.p
        r.hset(p + "a", "f", "v")
        r.hset(p + "b", "f", "v")
        self.assertEqual(r.exists(p + "a"), 1)
        self.assertEqual(r.exists(p + "a", p + "b", p + "c", p + "a"), 3)
        self.assertEqual(r.type(p + "a"), "hash")
        self.assertEqual(r.type(p + "c"), "none")
        self.assertEqual(r.touch(p + "a", p + "c"), 1)
        self.assertEqual(r.delete(p + "a", p + "c"), 1)
        self.assertEqual(r.unlink(p + "b"), 1)
        self.assertEqual(r.exists(p + "a", p + "b"), 0)
        self.assertEqual(r.delete(p + "a"), 0)

    def test_scan_iter_keys(self):
        r, p = self.r, self.p
        names = {p + "k%02d" % i for i in range(40)}
        for n in names:
            r.hset(n, "f", "v")
        r.hset(p + "other", "f", "v")
        self.assertEqual(set(r.scan_iter(match=p + "k*")), names)
        self.assertEqual(set(r.scan_iter(match=p + "k*", count=3)), names)
        self.assertEqual(set(r.scan_iter(match=p + "k*", _type="hash")), names)
        self.assertEqual(list(r.scan_iter(match=p + "k*", _type="string")), [])
        self.assertEqual(set(r.keys(p + "k*")), names)
        self.assertEqual(set(r.keys(p + "k0?")), {p + "k0%d" % i for i in range(10)})
        self.assertEqual(r.keys(p + "nothing*"), [])
        every = set(r.scan_iter())
        self.assertTrue(names | {p + "other"} <= every)

    def test_expire_ttl_persist(self):
        r, k = self.r, self.p + "t"
        self.assertEqual(r.ttl(k), -2)
        self.assertIs(r.expire(k, 100), False)
        r.hset(k, "f", "v")
        self.assertEqual(r.ttl(k), -1)
        self.assertIs(r.expire(k, 100), True)
        self.assertTrue(98 <= r.ttl(k) <= 100, r.ttl(k))
        self.assertTrue(90000 < r.pttl(k) <= 100000)
        self.assertIs(r.persist(k), True)
        self.assertEqual(r.ttl(k), -1)
        self.assertIs(r.persist(k), False)
        self.assertIs(r.pexpire(k, 50000), True)
        self.assertTrue(48 <= r.ttl(k) <= 50)
        # A ttl of zero (or less) deletes the key, as in Redis.
        self.assertIs(r.expire(k, 0), True)
        self.assertEqual(r.exists(k), 0)

    def test_ttl_pipelined_after_write(self):
        """TTL/EXPIRE NX in the same pipeline as the write that creates the key
        (ctxd replied -2 and 0 while the creation's fsync was in flight)."""
        r, p = self.r, self.p
        for i in range(10):
            k = p + str(i)
            pipe = r.pipeline(transaction=False)
            pipe.hset(k, "f", "v")
            pipe.ttl(k)
            pipe.execute_command("EXPIRE", k, 100, "NX")
            pipe.ttl(k)
            pipe.exists(k)
            self.assertEqual(pipe.execute(), [1, -1, 1, 100, 1])

    def test_flushdb_flushall(self):
        """Test suites empty the database in their fixtures (ctxd had no FLUSHDB)."""
        r, p = self.r, self.p
        for i in range(30):
            r.hset(p + str(i), "f", "v")
        if ON_CTXD:
            r.execute_command("CTX.CREATE", p + "empty")
        self.assertIs(r.flushdb(), True)
        self.assertEqual(r.dbsize(), 0)
        self.assertEqual(r.keys("*"), [])
        if ON_CTXD:  # empty contexts go too
            self.assertEqual(r.execute_command("CTX.LIST"), ["", []])
        r.hset(p + "again", "f", "v")
        self.assertIs(r.flushall(asynchronous=True), True)
        self.assertEqual(r.exists(p + "again"), 0)
        self.assertIs(r.flushdb(), True)  # an empty database
        with self.assertRaises(redis.ResponseError):
            r.execute_command("FLUSHDB", "NOW")

    def test_dbsize_counts_hashes(self):
        r, p = self.r, self.p
        before = r.dbsize()
        for i in range(5):
            r.hset(p + str(i), "f", "v")
        self.assertEqual(r.dbsize(), before + 5)
        r.delete(p + "0")
        self.assertEqual(r.dbsize(), before + 4)


class Pipelines(unittest.TestCase):
    def setUp(self):
        self.r = client()
        self.k = "pypipe:" + self.id().rsplit(".", 1)[-1]
        self.r.delete(self.k)

    def tearDown(self):
        self.r.close()

    def test_pipeline_transaction(self):
        with self.r.pipeline(transaction=True) as p:
            p.hset(self.k, "a", 1).hincrby(self.k, "a", 5).hget(self.k, "a").hgetall(self.k)
            self.assertEqual(p.execute(), [1, 6, "6", {"a": "6"}])

    def test_pipeline_no_transaction(self):
        with self.r.pipeline(transaction=False) as p:
            for i in range(100):
                p.hset(self.k, "f%d" % i, i)
            p.hlen(self.k)
            p.ping()
            res = p.execute()
        self.assertEqual(res, [1] * 100 + [100, True])

    def test_pipeline_errors(self):
        r, k = self.r, self.k
        r.hset(k, "s", "abc")
        with r.pipeline(transaction=False) as p:
            p.hget(k, "s").hincrby(k, "s", 1).hget(k, "s")
            res = p.execute(raise_on_error=False)
        self.assertEqual(res[0], "abc")
        self.assertIsInstance(res[1], redis.ResponseError)
        self.assertEqual(res[2], "abc")
        # An error while queueing aborts the transaction: redis-py raises it.
        with r.pipeline(transaction=True) as p:
            p.hset(k, "t", 1)
            p.execute_command("HSET", k)
            with self.assertRaises(redis.ResponseError):
                p.execute()
        self.assertIsNone(r.hget(k, "t"))

    def test_watch_error(self):
        r, k = self.r, self.k
        other = client()
        r.hset(k, "n", 1)
        with r.pipeline() as p:
            p.watch(k)
            self.assertEqual(p.hget(k, "n"), "1")
            other.hset(k, "n", 2)
            p.multi()
            p.hset(k, "n", 100)
            with self.assertRaises(redis.WatchError):
                p.execute()
        self.assertEqual(r.hget(k, "n"), "2")
        other.close()

    def test_transaction_helper_threads(self):
        """redis-py's transaction() retry loop from several threads: no lost update."""
        r, k = self.r, self.k
        threads, each = 6, 25
        retries = [0]
        lock = threading.Lock()

        def incr(pipe):
            n = int(pipe.hget(k, "n") or 0)
            pipe.multi()
            pipe.hset(k, "n", n + 1)
            pipe.hincrby(k, "ops", 1)

        def worker(errors):
            try:
                c = client()
                for _ in range(each):
                    tries = [0]

                    def counted(pipe):
                        tries[0] += 1
                        incr(pipe)

                    c.transaction(counted, k)
                    with lock:
                        retries[0] += tries[0] - 1
                c.close()
            except Exception as e:  # reported by the main thread
                errors.append(e)

        errors = []
        ts = [threading.Thread(target=worker, args=(errors,)) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(r.hget(k, "n"), str(threads * each))
        self.assertEqual(r.hget(k, "ops"), str(threads * each))
        print("\n  transaction(): %d increments, %d WatchError retries" %
              (threads * each, retries[0]), file=sys.stderr)

    def test_watch_create_race(self):
        """Clients WATCH an absent key and create it in a transaction() at
        once: exactly one increment each. ctxd lost one about once in 25
        rounds (a create in flight looked absent to EXEC's WATCH check)."""
        threads, rounds, lost = 4, 300, []
        clients = [client() for _ in range(threads)]
        for rnd in range(rounds):
            k = "%s:%d" % (self.k, rnd)
            barrier = threading.Barrier(threads)

            def incr(pipe, k=k):
                n = int(pipe.hget(k, "n") or 0)
                pipe.multi()
                pipe.hset(k, "n", n + 1)

            def worker(c, k=k, barrier=barrier):
                barrier.wait()
                c.transaction(incr, k)

            ts = [threading.Thread(target=worker, args=(c,)) for c in clients]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            got = self.r.hget(k, "n")
            if got != str(threads):
                lost.append((k, got))
            self.r.delete(k)
        for c in clients:
            c.close()
        self.assertEqual(lost, [], "rounds whose count is not %d" % threads)

    def test_shared_pool_threads(self):
        """One client (one pool) shared by threads doing HINCRBY: exact count."""
        r, k = self.r, self.k
        ts = [threading.Thread(target=lambda: [r.hincrby(k, "n", 1) for _ in range(50)])
              for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(r.hget(k, "n"), "400")


class Connection(unittest.TestCase):
    def test_client_name_id_list(self):
        r = client(single_connection_client=True)
        self.assertIs(r.client_setname("py-compat"), True)
        self.assertEqual(r.client_getname(), "py-compat")
        cid = r.client_id()
        self.assertIsInstance(cid, int)
        mine = [c for c in r.client_list() if int(c["id"]) == cid]
        self.assertEqual(len(mine), 1)
        self.assertEqual(mine[0]["name"], "py-compat")
        self.assertIn("addr", mine[0])
        self.assertEqual(r.client_info()["id"], cid)
        r.close()

    def test_client_name_at_connect(self):
        r = client(client_name="py-at-connect")
        self.assertEqual(r.client_getname(), "py-at-connect")
        r.close()

    def test_select_db0(self):
        r = client(db=0)
        self.assertIs(r.ping(), True)
        r.close()

    def test_info(self):
        r = client()
        info = r.info()
        if ON_CTXD:
            self.assertEqual(info["redis_version"], "7.2.0")
        self.assertEqual(info["loading"], 0)
        self.assertIn("connected_clients", info)
        self.assertEqual(info["role"], "master")
        self.assertEqual(r.info("server")["redis_mode"], "standalone")
        self.assertNotIn("connected_clients", r.info("server"))
        self.assertIn("used_memory", r.info("memory"))
        r.close()

    def test_output_limit_in_one_pipeline(self):
        """client-output-buffer-limit applies inside one pipelined read: the
        client is closed once its replies pass the hard limit, not after the
        server built all 2000 of them (200 MB; ctxd used to)."""
        r = client()
        old = r.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
        k = "py:outlimit"
        r.hset(k, "f", "z" * 100000)
        r.config_set("client-output-buffer-limit", "normal 1048576 0 0")
        try:
            before = int(r.info("stats")["total_commands_processed"])
            greedy = client()
            pipe = greedy.pipeline(transaction=False)
            for _ in range(2000):
                pipe.hgetall(k)
            with self.assertRaises(redis.ConnectionError):
                pipe.execute()
            greedy.close()
            ran = int(r.info("stats")["total_commands_processed"]) - before
            self.assertLess(ran, 100)
        finally:
            r.config_set("client-output-buffer-limit", old)
            r.delete(k)
            r.close()

    def test_config_get(self):
        r = client()
        self.assertEqual(r.config_get("maxmemory"), {"maxmemory": "0"})
        if ON_CTXD:
            self.assertEqual(r.config_get("appendonly"), {"appendonly": "yes"})
        self.assertEqual(r.config_get("port"), {"port": str(PORT)})
        self.assertEqual(r.config_get("no-such-parameter"), {})
        allp = r.config_get("*")
        self.assertIn("maxclients", allp)
        self.assertIs(r.config_set("timeout", 0), True)
        r.close()

    def test_time_command(self):
        r = client()
        secs, usecs = r.time()
        self.assertGreater(secs, 1600000000)
        self.assertTrue(0 <= usecs < 1000000)
        r.close()

    @unittest.skipUnless(ON_CTXD, "ctxd's own commands")
    def test_ctx_commands(self):
        r = client()
        k = "py:ctx"
        r.delete(k)
        self.assertEqual(r.execute_command("CTX.CREATE", k, "a", "1"), "OK")
        self.assertEqual(r.execute_command("CTX.VERSION", k), 1)
        self.assertEqual(r.execute_command("CTX.SET", k, "b", "2"), 2)
        self.assertEqual(r.execute_command("CTX.VERSION", k), 2)
        with self.assertRaisesRegex(redis.ResponseError, "^CTXNOTFOUND"):
            r.execute_command("CTX.VERSION", "py:ctx:absent")
        with self.assertRaisesRegex(redis.ResponseError, "^CTXEXISTS"):
            r.execute_command("CTX.CREATE", k)
        r.close()

    def test_error_classes(self):
        r = client()
        k = "py:errors"
        r.hset(k, "f", "v")
        with self.assertRaisesRegex(redis.ResponseError, "^WRONGTYPE"):
            r.get(k)
        with self.assertRaisesRegex(redis.ResponseError, "^WRONGTYPE"):
            r.lpush(k, "x")
        with self.assertRaisesRegex(redis.ResponseError, "unknown command"):
            r.execute_command("NOSUCHCMD", "a")
        with self.assertRaisesRegex(redis.ResponseError, "wrong number of arguments"):
            r.execute_command("HGET", k)
        if ON_CTXD:  # ctxd has one database
            with self.assertRaises(redis.ResponseError):
                r.execute_command("SELECT", 1)
        # The connection survives command errors.
        self.assertEqual(r.hget(k, "f"), "v")
        r.delete(k)
        r.close()


@unittest.skipUnless(PASS_PORT, "no password server (run under with_ctxd.sh)")
class Auth(unittest.TestCase):
    def test_password(self):
        r = client(port=PASS_PORT, password=PASSWORD)
        self.assertIs(r.ping(), True)
        self.assertEqual(r.hset("py:auth", "f", "v"), 1)
        self.assertEqual(r.hget("py:auth", "f"), "v")
        r.close()

    def test_username_password(self):
        r = client(port=PASS_PORT, username="default", password=PASSWORD)
        self.assertIs(r.ping(), True)
        r.close()

    def test_wrong_password(self):
        # redis-py 4.3 raises ResponseError for WRONGPASS (as against Redis 7);
        # redis-py 5 maps it to AuthenticationError.
        r = client(port=PASS_PORT, password="wrong")
        with self.assertRaises((redis.AuthenticationError, redis.ResponseError)) as cm:
            r.ping()
        self.assertTrue(str(cm.exception).startswith("WRONGPASS") or
                        isinstance(cm.exception, redis.AuthenticationError), cm.exception)
        r.close()

    def test_no_password(self):
        r = client(port=PASS_PORT)
        with self.assertRaises(redis.AuthenticationError):
            r.ping()
        r.close()

    def test_auth_command(self):
        r = client(port=PASS_PORT, single_connection_client=True)
        with self.assertRaises(redis.ResponseError):
            r.auth("wrong")
        self.assertIs(r.auth(PASSWORD), True)
        self.assertIs(r.ping(), True)
        r.close()


@unittest.skipUnless(MAJOR >= 5, "redis-py %s has no RESP3 (protocol=3 is redis-py 5+)"
                     % redis.__version__)
class Resp3(unittest.TestCase):
    def test_resp3(self):
        r = client(protocol=3)
        k = "py:resp3"
        r.delete(k)
        r.hset(k, mapping={"a": 1, "b": 2})
        self.assertEqual(r.hgetall(k), {"a": "1", "b": "2"})
        self.assertIsNone(r.hget(k, "zz"))
        self.assertEqual(r.hincrbyfloat(k, "a", 0.5), 1.5)
        self.assertEqual(dict(r.hscan_iter(k)), {"a": "1.5", "b": "2"})
        self.assertEqual(r.config_get("maxmemory"), {"maxmemory": "0"})
        r.close()


if __name__ == "__main__":
    print("redis-py %s on %s" % (redis.__version__, sys.executable), file=sys.stderr)
    unittest.main(verbosity=2)
