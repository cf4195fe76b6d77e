// Reference runs for scripts/bench-jobs --driver postgres: the same no-op job benchmark on
// pg-boss and on graphile-worker (versions pinned in scripts/bench/package.json, installed by
// scripts/bench/pgbench.py into build/bench-pgref), against the same PostgreSQL server.
//
//   NODE_PATH=<dir>/node_modules node pgref.js pgboss|graphile ROLE DB_URL [key=value ...]
//
// ROLE  setup  installs the library's schema (and pg-boss's two queues), prints SETTINGS, exits
//       work   processes jobs; prints READY once its workers poll; exits on SIGTERM/SIGINT
//       main   processes jobs like `work`, and: enqueues `jobs` no-op jobs in batches of
//              `batch`, counts completed jobs in the database until all are done and prints
//              THROUGHPUT jobs=N publish_s=… total_s=… jobs_per_s=… (from the first enqueue
//              until the last completion is committed); then, if latency=L > 0, enqueues L
//              jobs one at a time 1 ms apart and prints LATENCY jobs=L p50_ms=… p99_ms=…
//              (enqueue call → handler start, measured in this process, so only meaningful
//              when no other process takes those jobs).
// keys  jobs batch latency timeout_s (all roles read them; defaults below)
//       pg-boss:  workers (work() calls per process), batchSize, poll (pollingIntervalSeconds)
//       graphile: concurrency, localQueue (localQueue.size), completeDelay
//                 (completeJobBatchDelay ms; also used for failJobBatchDelay), pollInterval
// Errors: a failed job, or no progress for timeout_s, prints FAILED … and exits 1.
// One process, one event loop: no shared state beyond the module-level option table.
'use strict';
const { performance } = require('perf_hooks');

const [lib, role, url, ...kv] = process.argv.slice(2);
const DEFAULTS = {
  jobs: 50000, batch: 1000, latency: 0, timeout_s: 120,
  workers: 4, batchSize: 5000, poll: 0.5,
  concurrency: 24, localQueue: 500, completeDelay: 0, pollInterval: 2000,
};
const opt = { ...DEFAULTS };
for (const a of kv) {
  const [k, v] = a.split('=');
  if (!(k in DEFAULTS) || v === undefined || !Number.isFinite(+v)) fail(`bad option ${a}`);
  opt[k] = +v;
}
const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fail(msg) {
  console.log(`FAILED ${msg}`);
  process.exit(1);
}

// ---- pg-boss ---------------------------------------------------------------------------------

const pgboss = {
  settings: () => `workers=${opt.workers} batchSize=${opt.batchSize} pollingIntervalSeconds=${opt.poll}`,
  async start(primary) {
    const PgBoss = require('pg-boss');
    // Only the primary process migrates and runs maintenance/cron, as one would deploy it.
    const boss = new PgBoss({ connectionString: url, migrate: primary, supervise: primary,
                              schedule: primary, max: opt.workers + 4 });
    boss.on('error', (e) => console.error(`pg-boss error: ${e.message}`));
    await boss.start();
    return boss;
  },
  async setup() {
    const boss = await this.start(true);
    await boss.createQueue('bench');
    await boss.createQueue('lat');
    await boss.stop({ graceful: false, wait: true });
  },
  async work(ctx) {
    ctx.boss = await this.start(role === 'main');
    const wo = { batchSize: opt.batchSize, pollingIntervalSeconds: opt.poll };
    for (let i = 0; i < opt.workers; i++) {
      await ctx.boss.work('bench', wo, async () => {});
      await ctx.boss.work('lat', wo, async (jobs) => {
        const t = nowMs();
        for (const j of jobs) ctx.lat.push(t - j.data.t);
      });
    }
  },
  async enqueue(ctx, n) {
    const jobs = [];
    for (let i = 0; i < n; i++) jobs.push({ name: 'bench', data: { i } });
    await ctx.boss.insert(jobs);
  },
  async enqueueOne(ctx) {
    await ctx.boss.send('lat', { t: nowMs() });
  },
  // completed jobs stay in pgboss.job (state 'completed') until archived (12 h by default)
  async progress(db) {
    const r = await db.query(`SELECT count(*) FILTER (WHERE state = 'completed')::int AS done,
                                     count(*) FILTER (WHERE state = 'failed')::int AS failed
                              FROM pgboss.job WHERE name = 'bench'`);
    return r.rows[0];
  },
  async stop(ctx) {
    await ctx.boss.stop({ graceful: true, wait: true, timeout: 5000 });
  },
};

// ---- graphile-worker -------------------------------------------------------------------------

const graphile = {
  settings: () => `concurrency=${opt.concurrency} localQueue.size=${opt.localQueue} ` +
    `completeJobBatchDelay=${opt.completeDelay} failJobBatchDelay=${opt.completeDelay} pollInterval=${opt.pollInterval}`,
  options() {
    const { Logger } = require('graphile-worker');
    // graphile logs every completed job at info level; keep warnings and errors only
    const logger = new Logger(() => (level, message) => {
      if (level === 'error' || level === 'warning') console.error(`graphile ${level}: ${message}`);
    });
    return {
      connectionString: url, logger, noHandleSignals: true, concurrency: opt.concurrency,
      maxPoolSize: Math.max(10, opt.concurrency + 2), pollInterval: opt.pollInterval,
      preset: { worker: { localQueue: { size: opt.localQueue },
                          completeJobBatchDelay: opt.completeDelay,
                          failJobBatchDelay: opt.completeDelay } },
    };
  },
  async setup() {
    await require('graphile-worker').runMigrations(this.options());
  },
  async work(ctx) {
    const gw = require('graphile-worker');
    ctx.runner = await gw.run({
      ...this.options(),
      taskList: {
        bench: async () => {},
        lat: async (payload) => { ctx.lat.push(nowMs() - payload.t); },
      },
    });
    ctx.utils = await gw.makeWorkerUtils({ connectionString: url, logger: this.options().logger });
  },
  async enqueue(ctx, n) {
    const specs = [];
    for (let i = 0; i < n; i++) specs.push({ identifier: 'bench', payload: { i } });
    await ctx.utils.addJobs(specs);
  },
  async enqueueOne(ctx) {
    await ctx.utils.addJob('lat', { t: nowMs() });
  },
  // a completed job is deleted; what remains is queued, running, or failed (last_error set)
  async progress(db, total) {
    const r = await db.query(`SELECT count(*)::int AS left,
                                     count(*) FILTER (WHERE last_error IS NOT NULL)::int AS failed
                              FROM graphile_worker._private_jobs j
                              JOIN graphile_worker._private_tasks t ON t.id = j.task_id
                              WHERE t.identifier = 'bench'`);
    return { done: total - r.rows[0].left, failed: r.rows[0].failed };
  },
  async stop(ctx) {
    await ctx.utils.release();
    await ctx.runner.stop();
  },
};

// ---- roles -----------------------------------------------------------------------------------

const LIBS = { pgboss, graphile };
const L = LIBS[lib];
if (!L || !['setup', 'work', 'main'].includes(role) || !url) {
  fail('usage: pgref.js pgboss|graphile setup|work|main DB_URL [key=value ...]');
}

// Polls the completion count, more often as the end nears (the count scans the job table, so
// polling every few ms for the whole run would load the 2 shared cores); fails on a failed
// job or when nothing completed for timeout_s.
async function waitDone(db, total, t0) {
  let last = -1, lastChange = nowMs();
  for (;;) {
    const p = await L.progress(db, total);
    if (p.failed > 0) fail(`${p.failed} jobs failed`);
    if (p.done >= total) return;
    const t = nowMs();
    if (p.done !== last) { last = p.done; lastChange = t; }
    if (t - lastChange > opt.timeout_s * 1000) fail(`no progress for ${opt.timeout_s} s at ${p.done}/${total}`);
    const rate = p.done / Math.max(1, t - t0);                       // jobs per ms so far
    const eta = rate > 0 ? (total - p.done) / rate : 250;
    await sleep(Math.min(250, Math.max(5, eta / 4)));
  }
}

async function waitLatency(ctx, n) {
  const end = nowMs() + opt.timeout_s * 1000;
  while (ctx.lat.length < n) {
    if (nowMs() > end) fail(`latency jobs: ${ctx.lat.length}/${n} started within ${opt.timeout_s} s`);
    await sleep(5);
  }
}

async function main() {
  console.log(`SETTINGS ${lib} ${L.settings()}`);
  if (role === 'setup') return L.setup();
  const ctx = { lat: [] };
  await L.work(ctx);
  const stop = async () => { await L.stop(ctx); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  console.log('READY');
  if (role === 'work') return;                     // keeps running until signalled

  const { Client } = require('pg');
  const db = new Client({ connectionString: url });
  await db.connect();
  const t0 = nowMs();
  for (let sent = 0; sent < opt.jobs; sent += opt.batch) {
    await L.enqueue(ctx, Math.min(opt.batch, opt.jobs - sent));
  }
  const t1 = nowMs();
  await waitDone(db, opt.jobs, t0);
  const t2 = nowMs();
  console.log(`THROUGHPUT jobs=${opt.jobs} publish_s=${((t1 - t0) / 1e3).toFixed(3)} ` +
              `total_s=${((t2 - t0) / 1e3).toFixed(3)} jobs_per_s=${(opt.jobs / ((t2 - t0) / 1e3)).toFixed(0)}`);
  if (opt.latency > 0) {
    for (let i = 0; i < opt.latency; i++) {
      await L.enqueueOne(ctx);
      await sleep(1);
    }
    await waitLatency(ctx, opt.latency);
    const s = ctx.lat.slice().sort((a, b) => a - b);
    const pct = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
    console.log(`LATENCY jobs=${s.length} p50_ms=${pct(0.5).toFixed(3)} p99_ms=${pct(0.99).toFixed(3)}`);
  }
  await db.end();
  await L.stop(ctx);
  process.exit(0);
}

main().catch((e) => fail(`${lib} ${role}: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`));
