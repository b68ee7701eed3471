// ioredis.test.mjs - ioredis 5 (`ioredis`, RESP2) and 6 (`ioredis6`, needs node
// >= 20; RESP2 and RESP3) against ctxd, with node's test runner. Run by
// tests/compat/test_node.sh under with_ctxd.sh (CTXD_PORT, CTXD_PASS_PORT,
// CTXD_PASS). ioredis sends INFO when it connects (the ready check parses
// `loading:`) and CLIENT SETINFO; a failed INFO would make it reconnect forever.
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
	{ mod: 'ioredis', major: 5, resp: 2 },
	{ mod: 'ioredis6', major: 6, resp: 2, node: 20 },
	{ mod: 'ioredis6', major: 6, resp: 3, node: 20 },
];

const plain = (o) => Object.fromEntries(Object.entries(o));
const streamAll = (stream) => new Promise((resolve, reject) => {
	const out = [];
	stream.on('data', (page) => out.push(...page));
	stream.on('end', () => resolve(out));
	stream.on('error', reject);
});
const pairs = (flat) => {
	const o = {};
	for (let i = 0; i < flat.length; i += 2) o[flat[i]] = flat[i + 1];
	return o;
};

for (const v of variants) {
	const name = `ioredis ${v.major} (${v.mod}) RESP${v.resp}`;
	const skip = v.node && NODE_MAJOR < v.node ? `needs node >= ${v.node}` : false;
	// The timeout only stops a hung client library from hanging the suite.
	describe(name, { skip, timeout: 60000 }, () => {
		let Redis;
		let c;
		const P = `io${v.major}r${v.resp}:`;
		const opts = (extra = {}) => {
			const o = {
				host: '127.0.0.1', port: PORT, lazyConnect: true,
				retryStrategy: () => null, maxRetriesPerRequest: 0, ...extra,
			};
			if (v.resp === 3) o.protocol = 3;
			return o;
		};
		const connect = async (extra) => {
			const client = new Redis(opts(extra));
			client.on('error', () => {});
			await client.connect();
			return client;
		};

		before(async () => {
			const m = require(v.mod);
			Redis = m.default ?? m.Redis ?? m;
			c = await connect();
		});
		after(async () => {
			const ks = await c.keys(P + '*');
			if (ks.length) await c.del(...ks);
			await c.quit();
		});

		it('connects through the ready check (INFO) and CLIENT SETINFO', async () => {
			assert.equal(c.status, 'ready');
			const list = await c.client('LIST');
			const id = await c.client('ID');
			const line = list.split('\n').find((l) => l.startsWith(`id=${id} `));
			assert.ok(line, `own connection in CLIENT LIST: ${list}`);
			if (ON_CTXD) {  // Redis shows lib-name since 7.2
				assert.match(line, / lib-name=ioredis /);
				assert.match(line, / lib-ver=\d/);
			}
			if (v.resp === 3) assert.match(line, / resp=3( |$)/);
		});

		it('ping, echo, call', async () => {
			assert.equal(await c.ping(), 'PONG');
			assert.equal(await c.echo('hi'), 'hi');
			assert.equal(await c.call('PING', 'x'), 'x');
		});

		it('hash commands', async () => {
			const k = P + 'h';
			assert.equal(await c.hset(k, 'a', '1'), 1);
			assert.equal(await c.hset(k, { b: '2', c: '3', a: 'x' }), 2);
			assert.equal(await c.hget(k, 'a'), 'x');
			assert.equal(await c.hget(k, 'zz'), null);
			assert.deepEqual(plain(await c.hgetall(k)), { a: 'x', b: '2', c: '3' });
			assert.deepEqual(plain(await c.hgetall(P + 'absent')), {});
			assert.deepEqual(await c.hmget(k, 'a', 'zz', 'b'), ['x', null, '2']);
			assert.equal(await c.hlen(k), 3);
			assert.equal(await c.hexists(k, 'a'), 1);
			assert.equal(await c.hexists(k, 'zz'), 0);
			assert.deepEqual((await c.hkeys(k)).sort(), ['a', 'b', 'c']);
			assert.deepEqual((await c.hvals(k)).sort(), ['2', '3', 'x']);
			assert.equal(await c.hsetnx(k, 'a', 'no'), 0);
			assert.equal(await c.hstrlen(k, 'a'), 1);
			assert.equal(await c.hdel(k, 'a', 'zz'), 1);
			assert.equal(await c.hincrby(k, 'n', 3), 3);
			assert.equal(await c.hincrbyfloat(k, 'f', '2.5'), '2.5');
			assert.equal(await c.hincrbyfloat(k, 'f', '0.1'), '2.6');
			const blob = Buffer.from([0, 255, 13, 10, 42]);
			await c.hset(k, 'bin', blob);
			assert.deepEqual(await c.hgetBuffer(k, 'bin'), blob);
			await assert.rejects(c.hincrby(k, 'b', 'x'), /not an integer/);
		});

		it('hscanStream, hrandfield', async () => {
			const k = P + 'scan';
			const want = {};
			for (let i = 0; i < 120; i++) want['f' + i] = String(i);
			await c.hset(k, want);
			assert.deepEqual(pairs(await streamAll(c.hscanStream(k, { count: 7 }))), want);
			const m = pairs(await streamAll(c.hscanStream(k, { match: 'f1?', count: 50 })));
			assert.equal(Object.keys(m).length, 10);
			assert.ok((await c.hrandfield(k)) in want);
			assert.equal(new Set(await c.hrandfield(k, 5)).size, 5);
			const wv = await c.hrandfield(k, 3, 'WITHVALUES');
			// RESP2: flat [f, v, ...]; RESP3: [[f, v], ...].
			const flat = Array.isArray(wv[0]) ? wv.flat() : wv;
			assert.equal(flat.length, 6);
			for (const [f, val] of Object.entries(pairs(flat))) assert.equal(want[f], val);
		});

		it('keyspace: exists, del, type, scanStream, keys, expire, ttl, persist', async () => {
			const names = [];
			for (let i = 0; i < 25; i++) names.push(P + 'ks' + i);
			const pl = c.pipeline();
			for (const n of names) pl.hset(n, 'f', 'v');
			await pl.exec();
			assert.equal(await c.exists(...names.slice(0, 3), P + 'none'), 3);
			assert.equal(await c.type(names[0]), 'hash');
			assert.equal(await c.type(P + 'none'), 'none');
			const scanned = await streamAll(c.scanStream({ match: P + 'ks*', count: 4 }));
			assert.deepEqual(scanned.sort(), [...names].sort());
			const typed = await streamAll(c.scanStream({ match: P + 'ks*', type: 'hash' }));
			assert.equal(typed.length, 25);
			assert.deepEqual((await c.keys(P + 'ks*')).sort(), [...names].sort());
			assert.equal(await c.expire(names[0], 100), 1);
			const ttl = await c.ttl(names[0]);
			assert.ok(ttl >= 98 && ttl <= 100, `ttl ${ttl}`);
			assert.equal(await c.persist(names[0]), 1);
			assert.equal(await c.ttl(names[0]), -1);
			assert.equal(await c.ttl(P + 'none'), -2);
			assert.equal(await c.del(...names), 25);
		});

		it('pipeline', async () => {
			const k = P + 'pipe';
			const p = c.pipeline();
			for (let i = 0; i < 50; i++) p.hset(k, 'f' + i, i);
			p.hlen(k).hget(k, 'f7').get(k).hget(k, 'f8');
			const res = await p.exec();
			assert.equal(res.length, 54);
			for (let i = 0; i < 50; i++) assert.deepEqual(res[i], [null, 1]);
			assert.deepEqual(res[50], [null, 50]);
			assert.deepEqual(res[51], [null, '7']);
			assert.match(res[52][0].message, /^WRONGTYPE/);
			assert.deepEqual(res[53], [null, '8']);
		});

		it('multi / exec', async () => {
			const k = P + 'multi';
			const res = await c.multi().hset(k, 'a', 1).hincrby(k, 'a', 9).hget(k, 'a').exec();
			assert.deepEqual(res, [[null, 1], [null, 10], [null, '10']]);
			// A queueing error: EXECABORT, nothing applied.
			await assert.rejects(c.multi().hset(k, 'b', 1).call('HSET', k).exec(), /EXECABORT/);
			assert.equal(await c.hget(k, 'b'), null);
			// multi({pipeline: false}) sends MULTI at once; the connection's
			// commands are then QUEUED until exec.
			const m = await connect();
			assert.equal(await m.multi({ pipeline: false }), 'OK');
			assert.equal(await m.hset(k, 'c', 3), 'QUEUED');
			assert.deepEqual(await m.exec(), [[null, 1]]);
			await m.quit();
		});

		it('watch: exec gives null when the key changed', async () => {
			const k = P + 'watch';
			await c.hset(k, 'n', 1);
			const a = await connect();
			const b = await connect();
			assert.equal(await a.watch(k), 'OK');
			await b.hset(k, 'n', 2);
			assert.equal(await a.multi().hset(k, 'n', 100).exec(), null);
			assert.equal(await c.hget(k, 'n'), '2');
			await a.quit();
			await b.quit();
		});

		it('WATCH/MULTI/EXEC retry loops from several connections: exact count', async () => {
			const k = P + 'counter';
			const workers = 6;
			const each = 15;
			let retries = 0;
			const conns = [];
			for (let i = 0; i < workers; i++) conns.push(await connect());
			await Promise.all(conns.map(async (conn) => {
				for (let i = 0; i < each; i++) {
					for (;;) {
						await conn.watch(k);
						const n = Number((await conn.hget(k, 'n')) ?? 0);
						const r = await conn.multi().hset(k, 'n', n + 1).exec();
						if (r !== null) break;
						retries++;
					}
				}
			}));
			for (const conn of conns) await conn.quit();
			assert.equal(await c.hget(k, 'n'), String(workers * each));
			console.log(`# ${name}: ${workers * each} increments, ${retries} retries`);
		});

		it('client, info, config, dbsize', async () => {
			const d = await connect({ connectionName: 'io-named' });
			assert.equal(await d.client('GETNAME'), 'io-named');
			assert.equal(await d.client('SETNAME', 'io-renamed'), 'OK');
			assert.equal(await d.client('GETNAME'), 'io-renamed');
			assert.equal(typeof (await d.client('ID')), 'number');
			assert.match(await d.client('INFO'), /name=io-renamed/);
			await d.quit();
			const info = await c.info();
			assert.match(info, /^loading:0\r?$/m);
			assert.match(info, /^redis_version:/m);
			assert.match(await c.info('persistence'), /^loading:0/m);
			const cfg = await c.config('GET', 'maxmemory');
			assert.deepEqual(Array.isArray(cfg) ? cfg : Object.entries(cfg).flat(), ['maxmemory', '0']);
			const before = await c.dbsize();
			await c.hset(P + 'db', 'f', 'v');
			assert.equal(await c.dbsize(), before + 1);
		});

		it('CTX.* through call', { skip: !ON_CTXD }, async () => {
			const k = P + 'ctx';
			assert.equal(await c.call('CTX.CREATE', k, 'a', '1'), 'OK');
			assert.equal(await c.call('CTX.VERSION', k), 1);
			assert.equal(await c.call('CTX.SET', k, 'b', '2'), 2);
			await assert.rejects(c.call('CTX.VERSION', P + 'absent'), /CTXNOTFOUND/);
		});

		it('errors: WRONGTYPE, unknown command; connection survives', async () => {
			const k = P + 'err';
			await c.hset(k, 'f', 'v');
			await assert.rejects(c.get(k), (e) => e.name === 'ReplyError' && /^WRONGTYPE/.test(e.message));
			await assert.rejects(c.lpush(k, 'x'), /WRONGTYPE/);
			await assert.rejects(c.call('NOSUCHCMD'), /unknown command/);
			assert.equal(await c.hget(k, 'f'), 'v');
		});

		it('auth with a password; a wrong one is refused', async () => {
			const ok = await connect({ port: PASS_PORT, password: PASSWORD });
			assert.equal(await ok.ping(), 'PONG');
			await ok.quit();
			const user = await connect({ port: PASS_PORT, username: 'default', password: PASSWORD });
			assert.equal(await user.hset(P + 'auth', 'f', 'v'), 1);
			await user.quit();
			// connect() rejects ("Connection is closed": no retries); the
			// server's error comes as an 'error' event.
			const refused = async (o, re) => {
				const errors = [];
				const r = new Redis(opts({ port: PASS_PORT, ...o }));
				r.on('error', (e) => errors.push(e.message));
				await assert.rejects(r.connect());
				r.disconnect();
				assert.ok(errors.some((m) => re.test(m)), errors.join('; '));
			};
			await refused({ password: 'wrong' }, /^WRONGPASS/);
			// Without a password (RESP2: the ready check's INFO; RESP3: HELLO): NOAUTH.
			await refused({}, /^NOAUTH/);
		});
	});
}
