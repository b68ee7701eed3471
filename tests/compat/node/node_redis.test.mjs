// node_redis.test.mjs - node-redis (npm `redis`) against ctxd, with node's test
// runner. Versions: 4 (`redis4`, RESP2 only), 5 (`redis`) and 6 (`redis6`,
// needs node >= 20), each over RESP2 and (5 and 6) RESP3. Run by
// tests/compat/test_node.sh under with_ctxd.sh (CTXD_PORT, CTXD_PASS_PORT,
// CTXD_PASS). Each variant uses keys under its own prefix.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const PORT = Number(process.env.CTXD_PORT);
const PASS_PORT = Number(process.env.CTXD_PASS_PORT);
const PASSWORD = process.env.CTXD_PASS;
const ON_CTXD = process.env.CTXD_COMPAT_REDIS !== '1';
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

const variants = [
	{ mod: 'redis4', major: 4, resp: 2 },
	{ mod: 'redis', major: 5, resp: 2 },
	{ mod: 'redis', major: 5, resp: 3 },
	{ mod: 'redis6', major: 6, resp: 2, node: 20 },
	{ mod: 'redis6', major: 6, resp: 3, node: 20 },
];

// Plain objects whatever the reply's prototype (RESP3 maps may come without one).
const plain = (o) => Object.fromEntries(Object.entries(o));
// v4 iterators yield single items, v5+ yield a page (an array) at a time.
async function collect(iter) {
	const out = [];
	for await (const x of iter) {
		if (Array.isArray(x)) out.push(...x);
		else out.push(x);
	}
	return out;
}

for (const v of variants) {
	const name = `node-redis ${v.major} (${v.mod}) RESP${v.resp}`;
	const skip = v.node && NODE_MAJOR < v.node ? `needs node >= ${v.node}` : false;
	// The timeout only stops a hung client library from hanging the suite.
	describe(name, { skip, timeout: 60000 }, () => {
		let lib;
		let c;
		const P = `nr${v.major}r${v.resp}:`;
		const opts = (extra = {}) => {
			const o = { ...extra };
			o.socket = { host: '127.0.0.1', port: PORT, reconnectStrategy: false, ...extra.socket };
			if (v.major >= 5) o.RESP = v.resp;
			return o;
		};
		const connect = async (extra) => {
			const client = lib.createClient(opts(extra));
			client.on('error', () => {});
			await client.connect();
			return client;
		};

		before(async () => {
			lib = require(v.mod);
			c = await connect();
		});
		after(async () => {
			for (const k of await c.keys(P + '*')) await c.del(k);
			await c.quit();
		});

		it('ping, echo, sendCommand', async () => {
			assert.equal(await c.ping(), 'PONG');
			assert.equal(await c.echo('hello'), 'hello');
			assert.equal(await c.sendCommand(['PING', 'x']), 'x');
		});

		it('hash commands', async () => {
			const k = P + 'h';
			assert.equal(await c.hSet(k, 'a', '1'), 1);
			assert.equal(await c.hSet(k, { b: '2', c: '3', a: 'x' }), 2);
			assert.equal(await c.hGet(k, 'a'), 'x');
			assert.equal(await c.hGet(k, 'zz'), null);
			assert.deepEqual(plain(await c.hGetAll(k)), { a: 'x', b: '2', c: '3' });
			assert.deepEqual(plain(await c.hGetAll(P + 'absent')), {});
			assert.deepEqual(await c.hmGet(k, ['a', 'zz', 'b']), ['x', null, '2']);
			assert.equal(await c.hLen(k), 3);
			assert.equal(Number(await c.hExists(k, 'a')), 1);
			assert.equal(Number(await c.hExists(k, 'zz')), 0);
			assert.deepEqual((await c.hKeys(k)).sort(), ['a', 'b', 'c']);
			assert.deepEqual((await c.hVals(k)).sort(), ['2', '3', 'x']);
			assert.equal(Number(await c.hSetNX(k, 'a', 'no')), 0);
			assert.equal(Number(await c.hSetNX(k, 'd', '4')), 1);
			assert.equal(await c.hStrLen(k, 'd'), 1);
			assert.equal(await c.hDel(k, ['a', 'zz']), 1);
			assert.equal(await c.hDel(k, 'b'), 1);
			assert.equal(await c.hLen(k), 2);
		});

		it('hIncrBy, hIncrByFloat', async () => {
			const k = P + 'incr';
			assert.equal(await c.hIncrBy(k, 'n', 5), 5);
			assert.equal(await c.hIncrBy(k, 'n', -7), -2);
			assert.equal(Number(await c.hIncrByFloat(k, 'f', 1.5)), 1.5);
			assert.equal(Number(await c.hIncrByFloat(k, 'f', 0.25)), 1.75);
			assert.equal(await c.hGet(k, 'f'), '1.75');
			await c.hSet(k, 's', 'abc');
			await assert.rejects(c.hIncrBy(k, 's', 1), /not an integer/);
		});

		it('binary-safe values', async () => {
			const k = P + 'bin';
			const blob = Buffer.from([0, 1, 2, 13, 10, 36, 255, 254]);
			await c.hSet(k, 'b', blob);
			const got = v.major >= 5
				? await c.withTypeMapping({ [lib.RESP_TYPES.BLOB_STRING]: Buffer }).hGet(k, 'b')
				: await c.hGet(lib.commandOptions({ returnBuffers: true }), k, 'b');
			assert.ok(Buffer.isBuffer(got));
			assert.deepEqual(got, blob);
		});

		it('hScanIterator, hRandField', async () => {
			const k = P + 'scan';
			const want = {};
			for (let i = 0; i < 120; i++) want['f' + i] = String(i);
			await c.hSet(k, want);
			const entries = await collect(c.hScanIterator(k, { COUNT: 7 }));
			assert.equal(entries.length, 120);
			assert.deepEqual(Object.fromEntries(entries.map((e) => [e.field, e.value])), want);
			const matched = await collect(c.hScanIterator(k, { MATCH: 'f1?', COUNT: 50 }));
			assert.equal(matched.length, 10);
			assert.ok((await c.hRandField(k)) in want);
			const two = await c.hRandFieldCount(k, 2);
			assert.equal(new Set(two).size, 2);
			assert.equal((await c.hRandFieldCount(k, -300)).length, 300);
			let wv = await c.hRandFieldCountWithValues(k, 3);
			// v4 gives an object field -> value, v5+ an array of {field, value}.
			if (!Array.isArray(wv)) wv = Object.entries(wv).map(([field, value]) => ({ field, value }));
			assert.equal(wv.length, 3);
			for (const e of wv) assert.equal(want[e.field], e.value);
		});

		it('keyspace: exists, del, type, scanIterator, keys, expire, ttl, persist', async () => {
			const names = [];
			for (let i = 0; i < 30; i++) {
				names.push(P + 'ks' + i);
				await c.hSet(P + 'ks' + i, 'f', 'v');
			}
			assert.equal(await c.exists(names[0]), 1);
			assert.equal(await c.exists([names[0], names[1], P + 'none']), 2);
			assert.equal(await c.type(names[0]), 'hash');
			assert.equal(await c.type(P + 'none'), 'none');
			const scanned = await collect(c.scanIterator({ MATCH: P + 'ks*', COUNT: 4 }));
			assert.deepEqual(scanned.sort(), [...names].sort());
			const typed = await collect(c.scanIterator({ MATCH: P + 'ks*', TYPE: 'hash' }));
			assert.equal(typed.length, 30);
			assert.deepEqual((await c.keys(P + 'ks*')).sort(), [...names].sort());
			const k = names[0];
			assert.equal(await c.ttl(k), -1);
			assert.equal(Number(await c.expire(k, 100)), 1);
			const ttl = await c.ttl(k);
			assert.ok(ttl >= 98 && ttl <= 100, `ttl ${ttl}`);
			assert.equal(Number(await c.persist(k)), 1);
			assert.equal(await c.ttl(k), -1);
			assert.equal(await c.ttl(P + 'none'), -2);
			assert.equal(await c.del(names), 30);
			assert.equal(await c.exists(names), 0);
		});

		it('multi().exec() and execAsPipeline', async () => {
			const k = P + 'multi';
			const res = await c.multi().hSet(k, 'a', '1').hIncrBy(k, 'a', 9).hGet(k, 'a').hGetAll(k).exec();
			assert.equal(res.length, 4);
			assert.deepEqual(res.slice(0, 3), [1, 10, '10']);
			assert.deepEqual(plain(res[3]), { a: '10' });
			const pipe = await c.multi().hSet(k, 'b', '2').hLen(k).execAsPipeline();
			assert.deepEqual(pipe, [1, 2]);
			// A command refused while queueing: EXECABORT, nothing applied.
			await assert.rejects(
				c.multi().hSet(k, 'c', '3').addCommand(['HSET', k]).exec(),
				/EXECABORT|wrong number/);
			assert.equal(await c.hGet(k, 'c'), null);
		});

		it('WATCH: WatchError when the key changed', async () => {
			const k = P + 'watch';
			await c.hSet(k, 'n', '1');
			const other = await connect();
			if (v.major === 4) {
				await c.executeIsolated(async (iso) => {
					await iso.watch(k);
					await other.hSet(k, 'n', '2');
					await assert.rejects(iso.multi().hSet(k, 'n', '100').exec(), lib.WatchError);
				});
			} else {
				const iso = await connect();
				await iso.watch(k);
				await other.hSet(k, 'n', '2');
				await assert.rejects(iso.multi().hSet(k, 'n', '100').exec(), lib.WatchError);
				await iso.quit();
			}
			assert.equal(await c.hGet(k, 'n'), '2');
			await other.quit();
		});

		it('WATCH/MULTI/EXEC retry loops from several connections: exact count', async () => {
			const k = P + 'counter';
			const workers = 6;
			const each = 15;
			let retries = 0;
			const incr = async (conn) => {
				for (;;) {
					await conn.watch(k);
					const n = Number((await conn.hGet(k, 'n')) ?? 0);
					try {
						const r = await conn.multi().hSet(k, 'n', String(n + 1)).exec();
						if (r !== null) return;
					} catch (e) {
						if (!(e instanceof lib.WatchError)) throw e;
					}
					retries++;
				}
			};
			const conns = [];
			for (let i = 0; i < workers; i++) conns.push(await connect());
			await Promise.all(conns.map(async (conn) => {
				for (let i = 0; i < each; i++) {
					if (v.major === 4) await conn.executeIsolated((iso) => incr(iso));
					else await incr(conn);
				}
			}));
			for (const conn of conns) await conn.quit();
			assert.equal(await c.hGet(k, 'n'), String(workers * each));
			console.log(`# ${name}: ${workers * each} increments, ${retries} WatchError retries`);
		});

		it('client commands, CLIENT SETINFO at connect', async () => {
			const d = await connect({ name: 'nr-named' });
			assert.equal(await d.clientGetName(), 'nr-named');
			await d.clientSetName('nr-renamed');
			assert.equal(await d.clientGetName(), 'nr-renamed');
			const id = await d.clientId();
			assert.equal(typeof id, 'number');
			const mine = (await d.clientList()).filter((e) => Number(e.id) === id);
			assert.equal(mine.length, 1);
			assert.equal(mine[0].name, 'nr-renamed');
			// node-redis sends CLIENT SETINFO LIB-NAME/LIB-VER when it connects
			// (CLIENT LIST shows them since Redis 7.2: not on Debian's 7.0).
			if (ON_CTXD) {
				assert.equal(mine[0].libName, 'node-redis');
				assert.ok(mine[0].libVer, 'lib-ver set');
			}
			const info = await d.clientInfo();
			assert.equal(Number(info.id), id);
			await d.quit();
		});

		it('info, config get, dbsize, time', async () => {
			const info = await c.info();
			assert.equal(typeof info, 'string');
			assert.match(info, /^redis_version:/m);
			assert.match(info, /^loading:0/m);
			assert.match(await c.info('server'), /redis_mode:standalone/);
			assert.deepEqual(plain(await c.configGet('maxmemory')), { maxmemory: '0' });
			assert.deepEqual(plain(await c.configGet('no-such-param')), {});
			const before = await c.dbSize();
			await c.hSet(P + 'db1', 'f', 'v');
			assert.equal(await c.dbSize(), before + 1);
			const t = await c.time();
			assert.ok(t instanceof Date || Array.isArray(t));
		});

		it('CTX.* through sendCommand', { skip: !ON_CTXD }, async () => {
			const k = P + 'ctx';
			assert.equal(await c.sendCommand(['CTX.CREATE', k, 'a', '1']), 'OK');
			assert.equal(await c.sendCommand(['CTX.VERSION', k]), 1);
			assert.equal(await c.sendCommand(['CTX.SET', k, 'b', '2']), 2);
			const got = await c.sendCommand(['CTX.GET', k]);
			const m = Array.isArray(got) ? Object.fromEntries(
				got.reduce((a, x, i) => (i % 2 ? a : [...a, [x, got[i + 1]]]), [])) : plain(got);
			assert.equal(m.version, 2);
			await assert.rejects(c.sendCommand(['CTX.VERSION', P + 'absent']), /^CTXNOTFOUND|CTXNOTFOUND/);
		});

		it('errors: WRONGTYPE, unknown command; connection survives', async () => {
			const k = P + 'err';
			await c.hSet(k, 'f', 'v');
			await assert.rejects(c.get(k), (e) => e instanceof lib.ErrorReply && /^WRONGTYPE/.test(e.message));
			await assert.rejects(c.sendCommand(['NOSUCHCMD']), /unknown command/);
			assert.equal(await c.hGet(k, 'f'), 'v');
		});

		it('auth with a password; a wrong one is refused', async () => {
			const auth = { socket: { port: PASS_PORT } };
			const ok = await connect({ ...auth, password: PASSWORD });
			assert.equal(await ok.ping(), 'PONG');
			assert.equal(await ok.hSet(P + 'auth', 'f', 'v'), 1);
			await ok.quit();
			const user = await connect({ ...auth, username: 'default', password: PASSWORD });
			assert.equal(await user.ping(), 'PONG');
			await user.quit();
			const bad = lib.createClient(opts({ ...auth, password: 'wrong' }));
			bad.on('error', () => {});
			await assert.rejects(bad.connect(), /WRONGPASS/);
			const none = lib.createClient(opts(auth));
			none.on('error', () => {});
			// RESP3: HELLO 3 unauthenticated is NOAUTH at connect; RESP2: the first command.
			try {
				await none.connect();
				await assert.rejects(none.ping(), /NOAUTH/);
				await none.disconnect();
			} catch (e) {
				assert.match(e.message, /NOAUTH/);
			}
		});
	});
}
