// undici client for scripts/bench-http-client: one undici Pool with N connections
// (pipelining 1), N async loops each awaiting pool.request(GET) and reading the body.
//
//   NODE_PATH=<dir>/node_modules node undici_client.js URL INFLIGHT SECONDS
//
// Same protocol as curl_multi.c: "START", the timed window, "END" once the loops drained,
// a line on stdin, then "RESULT requests=.. errors=.. p50_ms=.. p99_ms=..".
'use strict';
const { Pool } = require('undici');

const [url, n, seconds] = [new URL(process.argv[2]), +process.argv[3], +process.argv[4]];
const now = () => Number(process.hrtime.bigint()) / 1e6;

async function loop(pool, end, lat, errs) {
  for (;;) {
    const t0 = now();
    if (t0 >= end) return;
    let ok = false;
    try {
      const { statusCode, body } = await pool.request({ path: url.pathname, method: 'GET' });
      await body.arrayBuffer();
      ok = statusCode === 200;
    } catch (e) {
      ok = false;
    }
    const t = now();
    if (t <= end) {
      if (ok) lat.push(t - t0); else errs.count++;
    }
  }
}

function readLine() {
  return new Promise((resolve) => {
    process.stdin.once('data', resolve);
    process.stdin.once('end', resolve);
  });
}

async function main() {
  const pool = new Pool(url.origin, { connections: n, pipelining: 1, headersTimeout: 10000,
                                      bodyTimeout: 10000 });
  const lat = [], errs = { count: 0 };
  console.log('START');
  const end = now() + seconds * 1e3;
  await Promise.all(Array.from({ length: n }, () => loop(pool, end, lat, errs)));
  console.log('END');
  await readLine();
  process.stdin.pause();
  lat.sort((a, b) => a - b);
  const pct = (q) => (lat.length ? lat[Math.floor(q * (lat.length - 1))] : 0);
  console.log(`RESULT requests=${lat.length} errors=${errs.count} p50_ms=${pct(0.5).toFixed(3)} ` +
              `p99_ms=${pct(0.99).toFixed(3)}`);
  await pool.close();
}

main();
