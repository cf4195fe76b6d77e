"""Postgres half of scripts/bench-jobs: one private PostgreSQL 15 (tests/e2e/pgserver.py, run as
the postgres OS user when we are root) with benchmark settings, then on that one server:

* taskhost with `driver: postgres`, 1 host and 3 hosts (two more `taskhost run` on the same
  project that only consume), in the `postgres` database;
* the reference runs (scripts/bench/pgref.js): pg-boss and graphile-worker, each in its own
  database (dropped and created before every run), with 1 Node process (plus the enqueue→start
  latency) and REF_ROUNDS times with 3 Node processes (one enqueues; all three work), the same
  job count and enqueue batch. The pinned versions (scripts/bench/package.json) are installed
  with npm into build/bench-pgref the first time; without node/npm, or when the install
  fails, the reason is printed and vs_* stay n/a. `--no-reference` skips them.

Every process started here is stopped by PID (workers: SIGTERM, then SIGKILL after a bound),
every run has a timeout, and the server is stopped in a finally block. The last line is
RESULT pg1_jobs_per_s=… pg3_jobs_per_s=… vs_pgboss=… vs_graphile=… pg_start_p99_ms=…
with vs_X = taskhost's 3-host figure / X's best 3-process figure (REF_ROUNDS below).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

SETTINGS = {"shared_buffers": "256MB", "autovacuum_naptime": "5s", "max_wal_size": "2GB",
            "synchronous_commit": "on"}

BENCH = os.path.join(ROOT, "scripts", "bench")
NODE_DIR = os.path.join(ROOT, "build", "bench-pgref")
# Per library: npm package, and pgref.js options (each process). pg-boss 10 has no
# LISTEN/NOTIFY: each work() loop polls, at most every pollingIntervalSeconds (0.5 s is its
# minimum), for up to batchSize jobs and completes them with one UPDATE (not awaited before
# the next fetch). 2 x 5000 per process: 4 x 5000 or 8 x 1000 were slower here with 3
# processes (more concurrent completes on 2 cores), runs spread widely either way (README).
# graphile-worker: one pool of `concurrency` workers fed from a local queue of localQueue jobs
# fetched in one query, completions batched (completeJobBatchDelay 0 = those of one tick; 50
# and 250 ms were slower here), as in graphile's own performance test (24 x local queue 500).
REFERENCE = {
    "pgboss": ("pg-boss", {"workers": 2, "batchSize": 5000, "poll": 0.5}),
    "graphile": ("graphile-worker", {"concurrency": 24, "localQueue": 500, "completeDelay": 0}),
}


# The 3-process figure of a library is its best of this many runs (each on a fresh database):
# pg-boss's runs are bimodal here. Its batched complete (`UPDATE … WHERE name = $1 AND id IN
# (SELECT UNNEST($2)) AND state = 'active'`) is planned, in some runs, as a nested loop that
# compares every active row of the queue's partition with every id, because the statistics of
# the new partition estimate 1 active row of 72 (auto_explain: ~3 s per complete instead of
# ~0.3 s; 2 cores then stay busy and the enqueue slows too). Best-of favours the reference,
# so vs_* do not flatter taskhost, whose figures are single runs.
REF_ROUNDS = 3


def start_server():
    import pgserver
    srv = pgserver.PgServer()          # fsync=off as in the tests; settings below via ALTER SYSTEM
    try:
        for k, v in SETTINGS.items():
            srv.psql(f"ALTER SYSTEM SET {k} = '{v}'")
        srv.stop()
        srv.start()
        shown = {k: srv.psql(f"SHOW {k}").strip() for k in list(SETTINGS) + ["fsync", "server_version"]}
    except BaseException:
        srv.close()                    # no server left behind when a setting is refused
        raise
    print("postgres: " + " ".join(f"{k}={v}" for k, v in shown.items()))
    return srv


class Unavailable(Exception):
    """The reference side cannot run; the message says why."""


def installed_versions(names):
    out = {}
    for name in names:
        try:
            with open(os.path.join(NODE_DIR, "node_modules", name, "package.json")) as f:
                out[name] = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            out[name] = None
    return out


def install_reference():
    """Installs the pinned packages into NODE_DIR unless they are there; returns the version
    line to print. Raises Unavailable."""
    for exe in ("node", "npm"):
        if not shutil.which(exe):
            raise Unavailable(f"{exe} not found on PATH")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if int(re.match(r"v(\d+)", node).group(1)) < 20:
        raise Unavailable(f"node {node}: pg-boss 10 needs Node.js 20 or newer")
    with open(os.path.join(BENCH, "package.json")) as f:
        pins = json.load(f)["dependencies"]
    if installed_versions(pins) != pins:
        os.makedirs(NODE_DIR, exist_ok=True)
        shutil.copy(os.path.join(BENCH, "package.json"), os.path.join(NODE_DIR, "package.json"))
        try:
            r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--omit=dev"], cwd=NODE_DIR,
                               capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise Unavailable("npm install did not finish in 300 s")
        if r.returncode != 0:
            why = re.sub(r"\w+://\S+", "<address>", (r.stdout + r.stderr).strip())   # no hosts in our output
            raise Unavailable(f"npm install failed (exit {r.returncode}): {why[-400:]}")
        got = installed_versions(pins)
        if got != pins:
            raise Unavailable(f"npm installed {got}, wanted {pins}")
    return f"node {node}  " + "  ".join(f"{k} {v}" for k, v in sorted(pins.items()))


def node_cmd(lib, role, url, opts):
    return ["node", os.path.join(BENCH, "pgref.js"), lib, role, url] + [f"{k}={v}" for k, v in opts.items()]


def stop_by_pid(procs):
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


def wait_ready(p, log, timeout):
    """Until the worker process wrote READY to its log; raises RuntimeError when it exits or
    the bound passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log) as f:
            if "READY" in f.read():
                return
        if p.poll() is not None:
            break
        time.sleep(0.05)
    with open(log) as f:
        raise RuntimeError(f"worker process not ready (exit {p.poll()}): {f.read()[-400:]}")


def run_reference(srv, lib, procs, args):
    """One run of `lib` with `procs` Node processes on a fresh database; returns the
    (jobs_per_s, p50_ms, p99_ms) of the main process (latencies None unless procs == 1)."""
    db = f"bench_{lib}"
    srv.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    srv.psql(f"CREATE DATABASE {db}")
    url = f"postgres://postgres@127.0.0.1:{srv.port}/{db}"
    opts = dict(REFERENCE[lib][1])
    env = dict(os.environ, NODE_PATH=os.path.join(NODE_DIR, "node_modules"))
    r = subprocess.run(node_cmd(lib, "setup", url, opts), env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"setup failed: {(r.stdout + r.stderr)[-400:]}")
    tmp = tempfile.mkdtemp(prefix="bench-pgref-")
    workers = []
    try:
        for i in range(procs - 1):
            log = os.path.join(tmp, f"worker{i}.log")
            with open(log, "w") as f:
                workers.append((subprocess.Popen(node_cmd(lib, "work", url, opts), env=env, stdout=f,
                                                 stderr=subprocess.STDOUT), log))
        for p, log in workers:
            wait_ready(p, log, 60)
        main_opts = dict(opts, jobs=args.jobs, batch=args.batch, timeout_s=60,
                         latency=args.latency_jobs if procs == 1 else 0)
        try:
            r = subprocess.run(node_cmd(lib, "main", url, main_opts), env=env, capture_output=True,
                               text=True, timeout=120 + args.jobs / 200)
        except subprocess.TimeoutExpired:     # subprocess.run kills the child on timeout
            raise RuntimeError(f"main process still running after {120 + args.jobs / 200:.0f} s")
        out = r.stdout + r.stderr
        tp = re.search(r"THROUGHPUT .*jobs_per_s=(\d+)", out)
        lat = re.search(r"LATENCY .*p50_ms=([\d.]+) p99_ms=([\d.]+)", out)
        if r.returncode != 0 or not tp or (procs == 1 and args.latency_jobs > 0 and not lat):
            raise RuntimeError(f"main process exit {r.returncode}: {out.strip()[-400:]}")
        label = f"{REFERENCE[lib][0]} x{procs}"
        print(f"{label:>20}: " + " | ".join(l for l in r.stdout.splitlines() if l.startswith(("THROUGHPUT", "LATENCY"))))
        return float(tp.group(1)), (float(lat.group(1)) if lat else None), (float(lat.group(2)) if lat else None)
    finally:
        stop_by_pid([p for p, _ in workers])
        shutil.rmtree(tmp, ignore_errors=True)


def run_references(srv, args):
    """Returns {lib: 3-process jobs/s or None}; prints every run, or why it did not run."""
    res = {lib: None for lib in REFERENCE}
    if args.no_reference:
        print("pg-boss / graphile-worker: skipped (--no-reference): vs_* are n/a")
        return res
    try:
        print("reference: " + install_reference())
    except (Unavailable, OSError, subprocess.SubprocessError) as e:
        print(f"pg-boss / graphile-worker not run: {e}: vs_* are n/a")
        return res
    for lib, (name, opts) in REFERENCE.items():
        print(f"{name}: " + " ".join(f"{k}={v}" for k, v in opts.items()) +
              f" per process; {args.jobs} jobs enqueued in batches of {args.batch} by one process")
        for procs, rounds in ((1, 1), (3, REF_ROUNDS)):
            for _ in range(rounds):
                try:
                    tp, _, _ = run_reference(srv, lib, procs, args)
                    if procs == 3:
                        res[lib] = max(tp, res[lib] or 0)
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    print(f"{name} x{procs} failed: {str(e)[:600]}")
        if res[lib] is not None:
            print(f"{name} x3 best of {REF_ROUNDS}: {res[lib]:.0f} jobs/s")
    return res


def main(args, run_one):
    if not __import__("pgserver").available():
        sys.exit("PostgreSQL 15 binaries not found (/usr/lib/postgresql/15/bin or PG_BIN)")
    srv = start_server()
    try:
        os.environ["BENCH_PG_DSN"] = srv.dsn
        pg1 = pg3 = p99 = None
        try:
            pg1, p50, p99 = run_one("postgres", args)
            srv.psql("TRUNCATE taskhost_jobs")
            pg3, _, _ = run_one("postgres", args, extra_hosts=2)
        except SystemExit as e:
            print(f"postgres driver run failed: {str(e)[:400]}")
        ref = run_references(srv, args)
    finally:
        srv.close()
    fmt = lambda v: "n/a" if v is None else f"{v:.0f}"
    vs = lambda r: "n/a" if r is None or pg3 is None else f"{pg3 / r:.2f}"
    print(f"RESULT pg1_jobs_per_s={fmt(pg1)} pg3_jobs_per_s={fmt(pg3)} vs_pgboss={vs(ref['pgboss'])} "
          f"vs_graphile={vs(ref['graphile'])} pg_start_p99_ms={'n/a' if p99 is None else f'{p99:.3f}'}")
