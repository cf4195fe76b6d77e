"""Postgres half of scripts/bench-jobs: one private PostgreSQL 15 (tests/e2e/pgserver.py, run as
the postgres OS user when we are root) with benchmark settings, then taskhost with
`driver: postgres` on it. The server is stopped by PID in a finally block.

State: taskhost with 1 host and with 3 hosts (two more `taskhost run` on the same project that
only consume); the pg-boss / graphile-worker reference runs are not written yet, so vs_* are
n/a.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

SETTINGS = {"shared_buffers": "256MB", "autovacuum_naptime": "5s", "max_wal_size": "2GB",
            "synchronous_commit": "on"}


def start_server():
    import pgserver
    srv = pgserver.PgServer()          # fsync=off as in the tests; settings below via ALTER SYSTEM
    for k, v in SETTINGS.items():
        srv.psql(f"ALTER SYSTEM SET {k} = '{v}'")
    srv.stop()
    srv.start()
    shown = {k: srv.psql(f"SHOW {k}").strip() for k in list(SETTINGS) + ["fsync", "server_version"]}
    print("postgres: " + " ".join(f"{k}={v}" for k, v in shown.items()))
    return srv


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
    finally:
        srv.close()
    fmt = lambda v: "n/a" if v is None else f"{v:.0f}"
    print("pg-boss / graphile-worker: not run yet (the reference runs are not written): vs_* are n/a")
    print(f"RESULT pg1_jobs_per_s={fmt(pg1)} pg3_jobs_per_s={fmt(pg3)} vs_pgboss=n/a vs_graphile=n/a "
          f"pg_start_p99_ms={'n/a' if p99 is None else f'{p99:.3f}'}")
