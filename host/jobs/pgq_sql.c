/*
** pgq_sql.c — the Postgres queue driver's connections, schema and row formatting
** (pgq_impl.h).
**
** Schema (version 1): one table of jobs, finished ones too until retention, shared by every
** queue and host on the database. Partial indexes keep the hot paths small: the ready index
** holds only queued rows, the due index only scheduled/retrying ones, the lease index only
** running ones, the finished index only finished ones (counted and pruned by it). The table
** is created with a low fillfactor and an autovacuum threshold of its own (README: operating
** notes) because every job is inserted, updated twice and deleted.
** taskhost_claim() is the claim: promote due rows, apply max_concurrent under an advisory
** transaction lock (each statement of a plpgsql function takes a new snapshot, so the count
** after the lock sees every claim committed before), and claim with SKIP LOCKED.
**
** Threads: every function works on the connection it is given, which belongs to the caller's
** thread.
*/
#include "pgq_impl.h"
#include "value/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCHEMA_VERSION 1

static const char SCHEMA_V1[] =
  "CREATE TABLE IF NOT EXISTS taskhost_jobs ("
  " seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
  " queue text NOT NULL, jid text NOT NULL, state smallint NOT NULL,"
  " priority int NOT NULL DEFAULT 0, attempt int NOT NULL DEFAULT 0,"
  " max_retries int NOT NULL, recoveries int NOT NULL DEFAULT 0,"
  " owner bigint, lease_until timestamptz, cancel_requested boolean NOT NULL DEFAULT false,"
  " idem_key text, data text NOT NULL, headers text, result text, errors jsonb, progress text,"
  " run_at timestamptz NOT NULL DEFAULT now(), created_at timestamptz NOT NULL DEFAULT now(),"
  " started_at timestamptz, finished_at timestamptz)"
  " WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0,"
  " autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_limit = 10000,"
  " autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000);"
  "CREATE UNIQUE INDEX IF NOT EXISTS taskhost_jobs_jid ON taskhost_jobs (queue, jid);"
  "CREATE UNIQUE INDEX IF NOT EXISTS taskhost_jobs_idem ON taskhost_jobs (queue, idem_key)"
  " WHERE idem_key IS NOT NULL AND state < 4;"
  "CREATE INDEX IF NOT EXISTS taskhost_jobs_ready ON taskhost_jobs (queue, priority, seq)"
  " WHERE state = 0;"
  "CREATE INDEX IF NOT EXISTS taskhost_jobs_due ON taskhost_jobs (queue, run_at)"
  " WHERE state IN (1, 3);"
  "CREATE INDEX IF NOT EXISTS taskhost_jobs_lease ON taskhost_jobs (queue, lease_until)"
  " WHERE state = 2;"
  "CREATE INDEX IF NOT EXISTS taskhost_jobs_done ON taskhost_jobs (queue, state, finished_at)"
  " WHERE state >= 4;"
  /* Rows with r_seq = 0 carry no job: r_wait_us is then the ms until the next due job. */
  "CREATE OR REPLACE FUNCTION taskhost_claim(q text, n int, own bigint, lease_ms bigint,"
  " maxc int, promote boolean)"
  " RETURNS TABLE (r_seq bigint, r_jid text, r_data text, r_headers text, r_attempt int,"
  " r_max_retries int, r_wait_us bigint) LANGUAGE plpgsql AS $f$"
  " DECLARE due timestamptz;"
  " BEGIN"
  "  IF promote THEN"
  "   UPDATE taskhost_jobs SET state = 0 WHERE seq IN (SELECT t.seq FROM taskhost_jobs t"
  "    WHERE t.queue = q AND t.state IN (1, 3) AND t.run_at <= clock_timestamp()"
  "    ORDER BY t.run_at LIMIT 1000 FOR UPDATE SKIP LOCKED);"
  "  END IF;"
  "  IF maxc > 0 THEN"
  "   PERFORM pg_advisory_xact_lock(hashtextextended('taskhost:' || q, 0));"
  "   n := least(n, maxc - (SELECT count(*) FROM taskhost_jobs t"
  "    WHERE t.queue = q AND t.state = 2)::int);"
  "  END IF;"
  "  IF n > 0 THEN"
  "   RETURN QUERY WITH c AS (SELECT t.seq FROM taskhost_jobs t WHERE t.queue = q AND t.state = 0"
  "     ORDER BY t.priority, t.seq LIMIT n FOR UPDATE SKIP LOCKED)"
  "    UPDATE taskhost_jobs j SET state = 2, attempt = j.attempt + 1, owner = own,"
  "     lease_until = clock_timestamp() + lease_ms * interval '1 millisecond',"
  "     started_at = clock_timestamp(), cancel_requested = false"
  "    FROM c WHERE j.seq = c.seq"
  "    RETURNING j.seq, j.jid, j.data, j.headers, j.attempt, j.max_retries,"
  "     greatest(0, (extract(epoch FROM clock_timestamp() - j.run_at) * 1e6))::bigint;"
  "  END IF;"
  "  SELECT min(t.run_at) INTO due FROM taskhost_jobs t WHERE t.queue = q AND t.state IN (1, 3);"
  "  IF due IS NOT NULL THEN"
  "   r_seq := 0; r_wait_us := greatest(0, extract(epoch FROM due - clock_timestamp()) * 1000)::bigint;"
  "   RETURN NEXT;"
  "  END IF;"
  " END $f$;";

const char PGQ_RECORD_COLS[] =
  "jid, CASE WHEN state IN (1, 3) AND run_at <= now() THEN 0 ELSE state END, attempt,"
  " max_retries, priority, (extract(epoch FROM created_at) * 1000)::bigint,"
  " (extract(epoch FROM run_at) * 1000)::bigint, (extract(epoch FROM started_at) * 1000)::bigint,"
  " (extract(epoch FROM finished_at) * 1000)::bigint, headers, progress, result, errors::text, seq";

PGconn *pgq_connect(const char *dsn, char *err, size_t errlen) {
  /* connect_timeout first: a value in the DSN overrides it (expand_dbname). */
  const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
  const char *const vals[] = {"5", "taskhost", dsn, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (c && PQstatus(c) == CONNECTION_OK) {
    PQsetNoticeProcessor(c, NULL, NULL);
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
  }
  const char *m = c ? PQerrorMessage(c) : "out of memory";
  size_t n = strcspn(m, "\n");
  snprintf(err, errlen, "%.*s", (int)n, m);
  PQfinish(c);
  return NULL;
}

int pgq_conn_bad(PGconn *c) { return !c || PQstatus(c) != CONNECTION_OK; }

/* r if its status is ok, else NULL with the server's message in err (r freed). */
static PGresult *checked(PGconn *c, PGresult *r, char *err, size_t errlen) {
  ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) return r;
  const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
  if (!m || !*m) m = PQerrorMessage(c);
  size_t len = strcspn(m, "\n");
  snprintf(err, errlen, "%.*s", (int)len, m);
  PQclear(r);
  return NULL;
}

PGresult *pgq_exec(PGconn *c, const char *sql, int n, const char *const *vals, char *err,
                   size_t errlen) {
  /* Without params: the simple protocol, which also takes several statements. */
  return checked(c, n ? PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0) : PQexec(c, sql), err, errlen);
}

PGresult *pgq_exec_prepared(PGconn *c, const char *name, const char *sql, int *prepared, int n,
                            const char *const *vals, char *err, size_t errlen) {
  for (int tries = 0; tries < 2; tries++) {
    if (!*prepared) {
      PGresult *r = checked(c, PQprepare(c, name, sql, n, NULL), err, errlen);
      if (!r) return NULL;
      PQclear(r);
      *prepared = 1;
    }
    PGresult *r = PQexecPrepared(c, name, n, vals, NULL, NULL, 0);
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!state || strcmp(state, "26000") != 0) return checked(c, r, err, errlen);
    PQclear(r);                       /* a pooler dropped it (DISCARD ALL): prepare again */
    *prepared = 0;
  }
  snprintf(err, errlen, "prepared statement %s keeps disappearing", name);
  return NULL;
}

/* Reads one statement's result and the sync after it (pipeline mode). -1: the connection
** broke (libpq answers NULL where a result is due). */
static int read_one(PGconn *c, struct pgq_stmt *s) {
  PGresult *r = PQgetResult(c);
  if (!r) {
    snprintf(s->err, sizeof s->err, "%.*s", (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
    return -1;
  }
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  if (state && strcmp(state, "26000") == 0) *s->prepared = 0;   /* a pooler dropped it */
  s->res = checked(c, r, s->err, sizeof s->err);
  for (int i = 0; i < 4 && (r = PQgetResult(c)); i++) PQclear(r);    /* the NULL ending it */
  if (!(r = PQgetResult(c))) return -1;
  int synced = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
  PQclear(r);
  return synced ? 0 : -1;
}

int pgq_pipeline(PGconn *c, struct pgq_stmt *s, int n) {
  for (int i = 0; i < n; i++) {
    s[i].res = NULL;
    s[i].err[0] = '\0';
  }
  for (int i = 0; i < n; i++)                 /* once per connection, before the pipeline */
    if (!*s[i].prepared) {
      PGresult *r = checked(c, PQprepare(c, s[i].name, s[i].sql, s[i].n, NULL), s[i].err, sizeof s[i].err);
      if (!r) {                                   /* every statement fails, with this error */
        for (int k = 0; k < n; k++)
          if (k != i) snprintf(s[k].err, sizeof s[k].err, "%s", s[i].err);
        return pgq_conn_bad(c) ? -1 : 0;
      }
      PQclear(r);
      *s[i].prepared = 1;
    }
  if (PQenterPipelineMode(c) != 1) return -1;
  int ok = 1;
  for (int i = 0; i < n && ok; i++)
    ok = PQsendQueryPrepared(c, s[i].name, s[i].n, s[i].vals, NULL, NULL, 0) == 1 && PQpipelineSync(c) == 1;
  for (int i = 0; i < n && ok; i++) ok = read_one(c, &s[i]) == 0;
  if (ok) PQexitPipelineMode(c);
  for (int i = 0; i < n && !ok; i++)
    if (!s[i].err[0]) snprintf(s[i].err, sizeof s[i].err, "the connection broke");
  return ok ? 0 : -1;
}

/* Runs sql and drops its result: 0 / -1. */
static int run(PGconn *c, const char *sql, char *err, size_t errlen) {
  PGresult *r = pgq_exec(c, sql, 0, NULL, err, errlen);
  PQclear(r);
  return r ? 0 : -1;
}

/* The stored schema version (0 when there is none yet), or -1 with err. */
static int stored_version(PGconn *c, char *err, size_t errlen) {
  PGresult *r = pgq_exec(c, "SELECT value FROM taskhost_meta WHERE key = 'schema_version'", 0, NULL,
                         err, errlen);
  if (!r) return -1;
  int v = PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : 0;
  PQclear(r);
  return v;
}

int pgq_migrate(PGconn *c, char *err, size_t errlen) {
  if (run(c, "BEGIN", err, errlen) != 0) return -1;
  int v = -1;
  if (run(c, "SELECT pg_advisory_xact_lock(hashtextextended('taskhost-schema', 0))", err, errlen) == 0 &&
      run(c, "CREATE TABLE IF NOT EXISTS taskhost_meta (key text PRIMARY KEY, value text NOT NULL)",
          err, errlen) == 0)
    v = stored_version(c, err, errlen);
  if (v > SCHEMA_VERSION) {
    snprintf(err, errlen, "the database holds taskhost queue schema version %d; this taskhost knows "
             "versions up to %d (upgrade taskhost)", v, SCHEMA_VERSION);
    v = -1;
  } else if (v == 0) {
    if (run(c, SCHEMA_V1, err, errlen) != 0 ||
        run(c, "INSERT INTO taskhost_meta VALUES ('schema_version', '1')", err, errlen) != 0)
      v = -1;
  }
  if (v < 0) {
    PQclear(PQexec(c, "ROLLBACK"));
    return -1;
  }
  return run(c, "COMMIT", err, errlen);
}

char *pgq_error_item(int attempt, int64_t at_ms, const char *msg, size_t len) {
  struct buf b;
  buf_init(&b);
  buf_printf(&b, "{\"attempt\":%d,\"at\":%lld,\"error\":", attempt, (long long)at_ms);
  json_put_string(&b, msg, len);
  buf_addc(&b, '}');
  buf_addc(&b, '\0');
  return buf_steal(&b);
}

int64_t pgq_int(PGresult *r, int i, int col) {
  return PQgetisnull(r, i, col) ? 0 : strtoll(PQgetvalue(r, i, col), NULL, 10);
}

static const char *col_or(PGresult *r, int i, int col, const char *dflt) {
  return PQgetisnull(r, i, col) ? dflt : PQgetvalue(r, i, col);
}

void pgq_put_record(const char *queue, PGresult *r, int i, struct buf *b) {
  int state = (int)pgq_int(r, i, RC_STATE);
  buf_adds(b, "{\"id\":");
  json_put_string(b, PQgetvalue(r, i, RC_JID), (size_t)PQgetlength(r, i, RC_JID));
  buf_adds(b, ",\"queue\":");
  json_put_string(b, queue, strlen(queue));
  buf_printf(b, ",\"state\":\"%s\",\"attempt\":%d,\"max_retries\":%d,\"priority\":%d",
             job_state_name(state), (int)pgq_int(r, i, RC_ATTEMPT), (int)pgq_int(r, i, RC_MAXR),
             (int)pgq_int(r, i, RC_PRIO));
  jobq_put_time(b, "created_at", pgq_int(r, i, RC_CREATED));
  jobq_put_time(b, "run_at", pgq_int(r, i, RC_RUNAT));
  jobq_put_time(b, "started_at", pgq_int(r, i, RC_STARTED));
  jobq_put_time(b, "finished_at", job_state_final(state) ? pgq_int(r, i, RC_FINISHED) : 0);
  if (!PQgetisnull(r, i, RC_HEADERS)) buf_printf(b, ",\"headers\":%s", PQgetvalue(r, i, RC_HEADERS));
  buf_printf(b, ",\"progress\":%s", col_or(r, i, RC_PROGRESS, "null"));
  buf_printf(b, ",\"result\":%s", state == JS_DONE ? col_or(r, i, RC_RESULT, "null") : "null");
  buf_printf(b, ",\"errors\":%s}", col_or(r, i, RC_ERRORS, "[]"));
}
