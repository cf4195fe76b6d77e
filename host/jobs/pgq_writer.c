/*
** pgq_writer.c — the writer thread of a Postgres queue (pgq_impl.h; the round is described
** at the top of pgq.c): connects (and reconnects with backoff), writes publishes and finishes
** in batches, renews leases, claims, notifies, and does the leader's rescue and pruning.
**
** Threads: everything here runs on the writer thread, which owns w->c and w->lc. It takes
** p->lock only to move requests and jobs; waiters are signalled and on_final is called with
** it released.
*/
#include "pgq_writer.h"
#include "base/log.h"
#include "value/json.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLAIM_MAX 500
#define PREFETCH_MAX 64              /* claimed jobs per waiting consumer, at most */
#define PREFETCH_NS (2 * NS_PER_MS)   /* ... enough to keep it busy this long */
#define NOTIFY_GAP_MS 20          /* a host notifies a queue at most this often (trailing edge) */
#define HOUSEKEEP_MS 1000
#define BACKOFF_MAX_MS 2000

#define INSERT_JOBS \
  "INSERT INTO taskhost_jobs (queue, jid, state, priority, max_retries, run_at, data, headers, idem_key)" \
  " SELECT $1, x.j, CASE WHEN x.dl > 0 THEN 1 ELSE 0 END, x.p, x.m," \
  " now() + x.dl * interval '1 millisecond', x.d, x.h, x.k" \
  " FROM json_to_recordset($2::json) AS x(j text, d text, p int, m int, dl bigint, h text, k text)"
/* Fresh ids: a clash fails the statement. Caller-given id or key: a clash is the job there. */
static const char SQL_INSERT[] = INSERT_JOBS;
static const char SQL_INSERT_KEYED[] = INSERT_JOBS " ON CONFLICT DO NOTHING RETURNING jid";
static const char SQL_EXISTING[] =
  "SELECT jid FROM taskhost_jobs WHERE queue = $1 AND (jid = $2 OR (idem_key = $3 AND state < 4))"
  " ORDER BY seq DESC LIMIT 1";
static const char SQL_RENEW[] =
  "UPDATE taskhost_jobs SET lease_until = clock_timestamp() + $2 * interval '1 millisecond'"
  " WHERE seq = ANY($1::bigint[]) AND owner = $3 AND state = 2 RETURNING seq, cancel_requested";
static const char SQL_PROGRESS[] =
  "UPDATE taskhost_jobs j SET progress = f.p FROM json_to_recordset($1::json) AS f(s bigint, a int, p text)"
  " WHERE j.seq = f.s AND j.attempt = f.a AND j.owner = $2 AND j.state = 2";
static const char SQL_CLAIM[] = "SELECT * FROM taskhost_claim($1, $2, $3, $4, $5, true)";
static const char SQL_COUNT[] =
  "SELECT (SELECT count(*) FROM taskhost_jobs WHERE queue = $1 AND state = 0)"
  " + (SELECT count(*) FROM taskhost_jobs WHERE queue = $1 AND state IN (1, 3)),"
  " (SELECT count(*) FROM taskhost_jobs WHERE queue = $1 AND state = 2)";
static const char SQL_LEADER[] = "SELECT pg_try_advisory_lock(hashtextextended('taskhost-leader:' || $1, 0))";
static const char SQL_RESCUE[] =
  "UPDATE taskhost_jobs j SET recoveries = j.recoveries + 1, owner = NULL, lease_until = NULL,"
  " state = CASE WHEN j.recoveries + 1 > $2 OR j.attempt > j.max_retries THEN 5 ELSE 3 END,"
  " finished_at = CASE WHEN j.recoveries + 1 > $2 OR j.attempt > j.max_retries THEN now() END,"
  " run_at = now() + least($4::float8, $3::float8 * power($5::float8, greatest(j.attempt - 1, 0)))"
  "  * (CASE $6::int WHEN 0 THEN random() WHEN 1 THEN 0.5 + 0.5 * random() ELSE 1 END)"
  "  * interval '1 millisecond',"
  " errors = coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object('attempt', j.attempt,"
  "  'at', (extract(epoch FROM now()) * 1000)::bigint, 'error',"
  "  'worker lost: its host stopped renewing the lease while the job ran'))"
  " WHERE j.seq IN (SELECT t.seq FROM taskhost_jobs t WHERE t.queue = $1 AND t.state = 2"
  "  AND t.lease_until < now() LIMIT 1000 FOR UPDATE SKIP LOCKED)"
  " RETURNING j.jid, j.state, j.attempt";
static const char SQL_PRUNE[] =
  "DELETE FROM taskhost_jobs WHERE seq IN (SELECT seq FROM taskhost_jobs WHERE queue = $1"
  " AND state >= 4 AND finished_at < now() - $2 * interval '1 millisecond' LIMIT 10000)";

/* ---- connection ---------------------------------------------------------------------- */

static void disconnect(struct wstate *w, const char *why) {
  PQfinish(w->c);
  PQfinish(w->lc);
  w->c = w->lc = NULL;
  w->leader = 0;
  atomic_store(&w->p->up, 0);
  log_warn("%s: lost the database connection (%s); reconnecting", w->p->name, why);
  w->down_logged = 1;
  w->backoff_ms = 100;
  w->next_connect = mono_ms() + w->backoff_ms;
}

static void connect_failed(struct wstate *w, PGconn *c, PGconn *lc) {
  PQfinish(c);
  PQfinish(lc);
  if (!w->down_logged) log_warn("%s: cannot reach the database (%s); retrying", w->p->name, w->err);
  w->down_logged = 1;
  w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : 100;
  if (w->backoff_ms > BACKOFF_MAX_MS) w->backoff_ms = BACKOFF_MAX_MS;
  w->next_connect = mono_ms() + w->backoff_ms;
}

static void wconnect(struct wstate *w) {
  struct pgq *p = w->p;
  if (mono_ms() < w->next_connect) return;
  PGconn *c = pgq_connect(p->dsn, w->err, sizeof w->err), *lc = NULL;
  if (c && pgq_migrate(c, w->err, sizeof w->err) != 0) {
    log_error("%s: %s", p->name, w->err);
    w->down_logged = 1;
  } else if (c) {
    lc = pgq_connect(p->dsn, w->err, sizeof w->err);
  }
  PGresult *r = lc && p->notify ? pgq_exec(lc, "LISTEN taskhost_jobs; LISTEN taskhost_cancel", 0, NULL,
                                           w->err, sizeof w->err) : NULL;
  if (!lc || (p->notify && !r)) {
    connect_failed(w, c, lc);
    return;
  }
  PQclear(r);
  w->c = c;
  w->lc = lc;
  memset(w->prepared, 0, sizeof w->prepared);
  w->backoff_ms = 0;
  if (w->down_logged) log_info("%s: connected to the database", p->name);
  w->down_logged = 0;
  w->next_renew = w->next_house = w->next_poll = 0;
  atomic_store(&p->up, 1);
}

/* Runs a statement on the work connection; NULL on failure (the connection is dropped when
** it is gone; other errors are in w->err). */
/* The statements of every round are prepared once per connection: their planning (the
** json_to_recordset joins) cost more than their execution on small batches. */
enum { H_INSERT, H_FINISH, H_CLAIM, H_RENEW, H_COUNT, H_PROGRESS, H_COUNT_ };
static const char *const HOT[] = {SQL_INSERT, PGQ_SQL_FINISH, SQL_CLAIM, SQL_RENEW, SQL_COUNT, SQL_PROGRESS};
static const char *const NAMES[] = {"th_insert", "th_finish", "th_claim", "th_renew", "th_count", "th_progress"};
_Static_assert(countof(HOT) == H_COUNT_ && countof(NAMES) == H_COUNT_, "HOT");

/* HOT[k] with its params, as a statement of a pipeline. */
static struct pgq_stmt hot_stmt(struct wstate *w, int k, int n, const char *const *vals) {
  return (struct pgq_stmt){.name = NAMES[k], .sql = HOT[k], .prepared = &w->prepared[k], .n = n, .vals = vals};
}

PGresult *pgq_wexec(struct wstate *w, PGconn *c, const char *sql, int n, const char *const *vals) {
  _Static_assert(H_COUNT_ <= countof(w->prepared), "prepared");
  if (!c) return NULL;
  size_t k = 0;
  while (c == w->c && k < countof(HOT) && HOT[k] != sql) k++;
  PGresult *r = c == w->c && k < countof(HOT)
    ? pgq_exec_prepared(c, NAMES[k], sql, &w->prepared[k], n, vals, w->err, sizeof w->err)
    : pgq_exec(c, sql, n, vals, w->err, sizeof w->err);
  if (!r && (pgq_conn_bad(w->c) || pgq_conn_bad(w->lc))) disconnect(w, w->err);
  return r;
}

/* ---- publish ------------------------------------------------------------------------- */

static void put_pub(struct pgq *p, const struct pgq_pub *pub, struct buf *b) {
  const struct jobq_publish_opts *o = pub->o;
  int mr = o->max_retries >= 0 ? o->max_retries : p->cfg.max_retries;
  for (size_t i = 0; i < pub->n; i++) {
    buf_addc(b, b->len ? ',' : '[');
    buf_adds(b, "{\"j\":");
    pgq_put_str_or_null(b, pub->gen ? pub->gen[i] : o->id);
    buf_adds(b, ",\"d\":");
    json_put_string(b, pub->data[i], pub->lens[i]);
    buf_printf(b, ",\"p\":%d,\"m\":%d,\"dl\":%lld,\"h\":", o->priority, mr,
               (long long)(o->delay_ns > 0 ? o->delay_ns / NS_PER_MS : 0));
    pgq_put_str_or_null(b, o->headers);
    buf_adds(b, ",\"k\":");
    pgq_put_str_or_null(b, o->idem_key);
    buf_addc(b, '}');
  }
}

/* The result of a failed publish statement for every pub of the list. */
static void pubs_failed(struct wstate *w, struct pgq_pub *list, const char *why) {
  for (struct pgq_pub *u = list; u; u = u->next) {
    u->rc = w->c ? JQ_ERROR : JQ_UNAVAILABLE;
    snprintf(u->err, sizeof u->err, w->c ? "queue %s: the job could not be stored: %s"
             : "queue %s: the database connection was lost before the job was confirmed (%s); try again",
             w->p->name, why);
  }
}

/* The jobs of the pubs of list as the JSON array the INSERT reads. */
static void pubs_json(struct pgq *p, struct pgq_pub *list, struct buf *b) {
  for (struct pgq_pub *u = list; u; u = u->next) put_pub(p, u, b);
  if (!b->len) buf_addc(b, '[');
  buf_adds(b, "]");
  buf_addc(b, '\0');
}

/* One INSERT for the pubs of list (unkeyed: their ids are fresh). 0, or -1 (pubs_failed). */
static int insert_batch(struct wstate *w, struct pgq_pub *list) {
  struct buf b;
  buf_init(&b);
  pubs_json(w->p, list, &b);
  const char *vals[] = {w->p->name, b.data};
  PGresult *r = pgq_wexec(w, w->c, SQL_INSERT, 2, vals);
  buf_free(&b);
  if (!r) { pubs_failed(w, list, w->err); return -1; }
  PQclear(r);
  for (struct pgq_pub *u = list; u; u = u->next) u->rc = JQ_OK;
  return 0;
}

/* A publish with a caller-given id or key: inserted, or the job already there. */
static void insert_keyed(struct wstate *w, struct pgq_pub *u) {
  struct buf b;
  buf_init(&b);
  put_pub(w->p, u, &b);
  buf_adds(&b, "]");
  buf_addc(&b, '\0');
  const char *vals[] = {w->p->name, b.data};
  PGresult *r = pgq_wexec(w, w->c, SQL_INSERT_KEYED, 2, vals);
  buf_free(&b);
  u->next = NULL;
  if (!r) { pubs_failed(w, u, w->err); return; }
  int inserted = PQntuples(r) > 0;
  if (inserted) snprintf(u->id_out, u->idlen, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  u->rc = JQ_OK;
  if (inserted) return;
  const char *ev[] = {w->p->name, u->o->id, u->o->idem_key};
  if (!(r = pgq_wexec(w, w->c, SQL_EXISTING, 3, ev))) { pubs_failed(w, u, w->err); return; }
  if (PQntuples(r)) {
    snprintf(u->id_out, u->idlen, "%s", PQgetvalue(r, 0, 0));
    u->existed = 1;
  } else {
    u->rc = JQ_ERROR;                /* the conflicting job went meanwhile */
    snprintf(u->err, sizeof u->err, "queue %s: the job's id or key was taken meanwhile; try again", w->p->name);
  }
  PQclear(r);
}

static void send_notify(struct wstate *w, int64_t now) {
  const char *vals[] = {w->p->name};
  PQclear(pgq_wexec(w, w->c, "SELECT pg_notify('taskhost_jobs', $1)", 1, vals));
  w->last_notify = now;
  w->notify_pending = 0;
}

/* Splits list into publishes with neither a caller-given id nor an idempotency key (*batch:
** one INSERT; a clash of fresh ids fails it) and keyed ones (one INSERT … ON CONFLICT each, a
** clash names the job there); returns the number of batch publishes. */
static size_t pubs_split(struct pgq_pub *list, struct pgq_pub **batch, struct pgq_pub **keyed) {
  struct pgq_pub **bt = batch, **kt = keyed;
  size_t nbatch = 0;
  *batch = *keyed = NULL;
  for (struct pgq_pub *u = list, *next; u; u = next) {
    next = u->next;
    u->next = NULL;
    if (!pgq_pub_keyed(u)) { *bt = u; bt = &u->next; nbatch++; }
    else { *kt = u; kt = &u->next; }
  }
  return nbatch;
}

/* The batch INSERT failed (why): each publish again on its own, so one bad job (say, bytes
** that are not UTF-8) does not fail the others of its round; then the keyed ones. */
static void pubs_retry_and_keyed(struct wstate *w, struct pgq_pub *batch, size_t nbatch, int failed,
                                 const char *why, struct pgq_pub *keyed) {
  if (failed) pubs_failed(w, batch, why);
  if (failed && nbatch > 1 && w->c)
    for (struct pgq_pub *u = batch, *next; u; u = next) {
      next = u->next;
      u->next = NULL;
      insert_batch(w, u);
      u->next = next;
    }
  if (!w->c) { pubs_failed(w, keyed, "not connected"); return; }
  for (struct pgq_pub *u = keyed, *next; u; u = next) {
    next = u->next;
    insert_keyed(w, u);
    u->next = next;
  }
}

/* Counts the stored publishes, asks for a notification, and answers every publisher. It
** runs no statement: the round's pipeline may still be reading. */
static void pubs_settle(struct wstate *w, struct pgq_pub *batch, struct pgq_pub *keyed) {
  struct pgq *p = w->p;
  size_t added = 0;
  for (struct pgq_pub *u = batch; u; u = u->next) added += u->rc == JQ_OK ? u->n : 0;
  for (struct pgq_pub *u = keyed; u; u = u->next) added += u->rc == JQ_OK && !u->existed;
  if (added) {
    pthread_mutex_lock(&p->lock);
    p->st.published += added;
    p->live_est += added;
    p->kick = 1;
    pthread_mutex_unlock(&p->lock);
    if (p->notify) w->notify_pending = 1;        /* sent at the end of the round */
  }
  struct pgq_pub *lists[] = {batch, keyed};
  for (int k = 0; k < 2; k++)
    for (struct pgq_pub *u = lists[k], *next; u; u = next) {
      next = u->next;                      /* u is gone once answered */
      pgq_pub_done(u);
    }
}

/* ---- leases, progress, claims ----------------------------------------------------------- */

static void renew(struct wstate *w, int64_t now) {
  struct pgq *p = w->p;
  w->next_renew = now + p->lease_ms / 3;
  struct buf b;
  buf_init(&b);
  pthread_mutex_lock(&p->lock);
  for (size_t i = 0; i < p->nheld; i++)
    buf_printf(&b, "%c%lld", b.len ? ',' : '{', (long long)p->held[i]->seq);
  pthread_mutex_unlock(&p->lock);
  if (!b.len) { buf_free(&b); return; }
  buf_adds(&b, "}");
  buf_addc(&b, '\0');
  char lease[24], owner[24];
  snprintf(lease, sizeof lease, "%" PRId64, p->lease_ms);
  snprintf(owner, sizeof owner, "%" PRId64, p->owner);
  const char *vals[] = {b.data, lease, owner};
  PGresult *r = pgq_wexec(w, w->c, SQL_RENEW, 3, vals);
  buf_free(&b);
  if (!r) return;
  pthread_mutex_lock(&p->lock);
  for (int i = 0; i < PQntuples(r); i++)
    if (PQgetvalue(r, i, 1)[0] == 't') pgq_cancel_local(p, pgq_int(r, i, 0));
  pthread_mutex_unlock(&p->lock);
  PQclear(r);
}

static void write_progress(struct wstate *w) {
  struct pgq *p = w->p;
  struct buf b;
  buf_init(&b);
  pthread_mutex_lock(&p->lock);
  for (size_t i = 0; i < p->nheld; i++) {
    struct job *j = p->held[i];
    if (!j->inflight || !j->progress) continue;
    j->inflight = 0;
    buf_printf(&b, "%c{\"s\":%lld,\"a\":%d,\"p\":", b.len ? ',' : '[', (long long)j->seq, j->attempt);
    json_put_string(&b, j->progress, strlen(j->progress));
    buf_addc(&b, '}');
  }
  p->progress_dirty = 0;
  pthread_mutex_unlock(&p->lock);
  if (!b.len) { buf_free(&b); return; }
  buf_adds(&b, "]");
  buf_addc(&b, '\0');
  char owner[24];
  snprintf(owner, sizeof owner, "%" PRId64, p->owner);
  const char *vals[] = {b.data, owner};
  PQclear(pgq_wexec(w, w->c, SQL_PROGRESS, 2, vals));
  buf_free(&b);
}

/* A claimed row → a job handed to consumers (row i of a taskhost_claim result). */
static struct job *claimed_job(PGresult *r, int i, int64_t now_ns) {
  struct job *j = xcalloc(1, sizeof *j);
  j->seq = pgq_int(r, i, 0);
  j->id = xstrdup(PQgetvalue(r, i, 1));
  j->data = xstrndup(PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2));
  j->data_len = (size_t)PQgetlength(r, i, 2);
  j->headers = PQgetisnull(r, i, 3) ? NULL : xstrdup(PQgetvalue(r, i, 3));
  j->attempt = (int)pgq_int(r, i, 4);
  j->max_retries = (int)pgq_int(r, i, 5);
  j->ready_mono = now_ns - pgq_int(r, i, 6) * 1000;
  j->state = JS_RUNNING;
  j->claimed = 1;
  return j;
}

/* How many jobs to claim this round (0: none). `published`: this round stores new jobs. */
static size_t claim_want(struct wstate *w, int64_t now, int published) {
  struct pgq *p = w->p;
  pthread_mutex_lock(&p->lock);
  size_t want = !p->draining && !p->stopped && p->waiting > p->nbuf ? p->waiting - p->nbuf : 0;
  /* A deep queue of short jobs: claim what keeps each waiting consumer busy for about one
  ** round (2 ms of recent run time, at most 64 jobs); long jobs are claimed one per free
  ** consumer, so a host never sits on jobs another host could start. */
  if (w->deep && !p->cfg.max_concurrent) {
    int64_t per = PREFETCH_NS / (p->run_ewma_ns > 1000 ? p->run_ewma_ns : 1000);
    want *= (size_t)(per < 1 ? 1 : per > PREFETCH_MAX ? PREFETCH_MAX : per);
  }
  if (want > CLAIM_MAX) want = CLAIM_MAX;
  int go = want && (published || p->kick || w->deep || now >= w->next_poll ||
                    (w->next_due && now >= w->next_due));
  if (go) p->kick = 0;
  pthread_mutex_unlock(&p->lock);
  return go ? want : 0;
}

/* The claim's params (into the caller's arrays). */
struct claim_args { char n[24], owner[24], lease[24], maxc[24]; const char *vals[5]; };
static void claim_args(struct pgq *p, size_t want, struct claim_args *a) {
  snprintf(a->n, sizeof a->n, "%zu", want);
  snprintf(a->owner, sizeof a->owner, "%" PRId64, p->owner);
  snprintf(a->lease, sizeof a->lease, "%" PRId64, p->lease_ms);
  snprintf(a->maxc, sizeof a->maxc, "%d", p->cfg.max_concurrent);
  const char *v[] = {p->name, a->n, a->owner, a->lease, a->maxc};
  memcpy(a->vals, v, sizeof v);
}

/* The claim's result r (NULL: it failed with err): the jobs go to the consumers; frees r. */
static void claim_take(struct wstate *w, int64_t now, PGresult *r, size_t want, const char *err) {
  struct pgq *p = w->p;
  w->next_poll = now + p->poll_ms;
  if (!r) {
    if (w->c) log_error("%s: claim: %s", p->name, err);
    return;
  }
  int64_t now_ns = clock_mono_ns();
  size_t got = 0, rows = (size_t)PQntuples(r);
  w->next_due = 0;
  struct job **js = xmalloc((rows + 1) * sizeof *js);
  for (size_t i = 0; i < rows; i++) {
    if (pgq_int(r, (int)i, 0) == 0) { w->next_due = mono_ms() + pgq_int(r, (int)i, 6); continue; }
    js[got++] = claimed_job(r, (int)i, now_ns);
  }
  PQclear(r);
  w->deep = got == want;
  pthread_mutex_lock(&p->lock);
  if (p->nbuf + got > p->capbuf) {
    p->capbuf = (p->nbuf + got) * 2;
    p->buf = xrealloc(p->buf, p->capbuf * sizeof *p->buf);
  }
  if (p->nheld + got > p->capheld) {
    p->capheld = (p->nheld + got) * 2;
    p->held = xrealloc(p->held, p->capheld * sizeof *p->held);
  }
  if (got) {
    memcpy(p->buf + p->nbuf, js, got * sizeof *js);
    memcpy(p->held + p->nheld, js, got * sizeof *js);
    p->nbuf += got;
    p->nheld += got;
    p->running_est += got;                        /* until the next count */
    pthread_cond_broadcast(&p->cv);
  }
  pthread_mutex_unlock(&p->lock);
  free(js);
}

/* ---- housekeeping: counts, leader, rescue, prune --------------------------------------- */

static void count_jobs(struct wstate *w) {
  const char *vals[] = {w->p->name};
  PGresult *r = pgq_wexec(w, w->c, SQL_COUNT, 1, vals);
  if (!r) return;
  pthread_mutex_lock(&w->p->lock);
  w->p->running_est = (size_t)pgq_int(r, 0, 1);
  w->p->live_est = (size_t)pgq_int(r, 0, 0) + w->p->running_est;
  pthread_mutex_unlock(&w->p->lock);
  PQclear(r);
}

static void rescue(struct wstate *w) {
  struct pgq *p = w->p;
  char maxrec[24], base[32], cap[32], factor[32], jitter[8];
  snprintf(maxrec, sizeof maxrec, "%d", p->cfg.max_recoveries);
  snprintf(base, sizeof base, "%.3f", (double)p->cfg.backoff_base_ns / 1e6);
  snprintf(cap, sizeof cap, "%.3f", p->cfg.backoff_cap_ns > 0 ? (double)p->cfg.backoff_cap_ns / 1e6 : 1e12);
  snprintf(factor, sizeof factor, "%.6f", p->cfg.backoff_factor);
  snprintf(jitter, sizeof jitter, "%d", (int)p->cfg.jitter);
  const char *vals[] = {p->name, maxrec, base, cap, factor, jitter};
  PGresult *r = pgq_wexec(w, w->c, SQL_RESCUE, 6, vals);
  if (!r) {
    if (w->c) log_error("%s: rescue: %s", p->name, w->err);
    return;
  }
  static const char lost[] = "worker lost: its host stopped renewing the lease while the job ran";
  for (int i = 0; i < PQntuples(r); i++) {
    int state = (int)pgq_int(r, i, 1), attempt = (int)pgq_int(r, i, 2);
    log_warn("%s: job %s: its lease ran out while it ran (attempt %d): %s", p->name,
             PQgetvalue(r, i, 0), attempt, job_state_name(state));
    if (state == JS_FAILED && p->cfg.on_final)
      p->cfg.on_final(p->cfg.on_final_ud, p->name, PQgetvalue(r, i, 0), state, attempt, lost, sizeof lost - 1);
  }
  if (PQntuples(r)) {
    pthread_mutex_lock(&p->lock);
    p->kick = 1;
    pthread_mutex_unlock(&p->lock);
  }
  PQclear(r);
}

static void housekeep(struct wstate *w, int64_t now) {
  struct pgq *p = w->p;
  w->next_house = now + HOUSEKEEP_MS;
  count_jobs(w);
  if (!w->leader && w->lc) {
    const char *vals[] = {p->name};
    PGresult *r = pgq_wexec(w, w->lc, SQL_LEADER, 1, vals);
    if (r && PQgetvalue(r, 0, 0)[0] == 't') {
      w->leader = 1;
      log_debug("%s: this host does the queue's maintenance (rescue, pruning)", p->name);
    }
    PQclear(r);
  }
  if (!w->leader || !w->c) return;
  rescue(w);
  if (p->cfg.retention_ns && w->c) {
    char ret[24];
    snprintf(ret, sizeof ret, "%lld", (long long)(p->cfg.retention_ns / NS_PER_MS));
    const char *vals[] = {p->name, ret};
    PQclear(pgq_wexec(w, w->c, SQL_PRUNE, 2, vals));
  }
}

/* ---- the loop -------------------------------------------------------------------------- */

static void read_notifies(struct wstate *w) {
  if (!w->lc) return;
  if (!PQconsumeInput(w->lc)) {
    snprintf(w->err, sizeof w->err, "%.*s", (int)strcspn(PQerrorMessage(w->lc), "\n"), PQerrorMessage(w->lc));
    disconnect(w, w->err);
    return;
  }
  PGnotify *n;
  struct pgq *p = w->p;
  while ((n = PQnotifies(w->lc))) {
    pthread_mutex_lock(&p->lock);
    if (strcmp(n->relname, "taskhost_jobs") == 0 && strcmp(n->extra, p->name) == 0) p->kick = 1;
    else if (strcmp(n->relname, "taskhost_cancel") == 0) pgq_cancel_local(p, strtoll(n->extra, NULL, 10));
    pthread_mutex_unlock(&p->lock);
    PQfreemem(n);
  }
}

/* A round's batch INSERT, finish UPDATE and claim go out together in one round trip
** (pgq_pipeline_send: each its own transaction, in that order, so the claim sees the jobs
** just stored). The publishers are answered as soon as the INSERT's result is read, before
** the finish and the claim have run. What fails is retried the slow way (one publish or
** outcome at a time) once every result of the pipeline is read. */
struct round {
  struct pgq_stmt st[3];
  int ins, fin, claim, n;                 /* index into st, or -1 */
  int sent;                               /* the pipeline is out; results not all read */
  struct buf bi, bf;
  const char *vi[2], *vf[2];
  char owner[24];
  struct claim_args ca;
};

static void round_send(struct wstate *w, struct round *r, struct pgq_pub *batch,
                       struct pgq_fin *fins, size_t want) {
  struct pgq *p = w->p;
  r->ins = r->fin = r->claim = -1;
  buf_init(&r->bi);
  buf_init(&r->bf);
  snprintf(r->owner, sizeof r->owner, "%" PRId64, p->owner);
  if (!w->c) return;
  if (batch) {
    pubs_json(p, batch, &r->bi);
    r->vi[0] = p->name;
    r->vi[1] = r->bi.data;
    r->st[r->ins = r->n++] = hot_stmt(w, H_INSERT, 2, r->vi);
  }
  if (fins) {
    pgq_fins_json(fins, &r->bf);
    r->vf[0] = r->bf.data;
    r->vf[1] = r->owner;
    r->st[r->fin = r->n++] = hot_stmt(w, H_FINISH, 2, r->vf);
  }
  if (want) {
    claim_args(p, want, &r->ca);
    r->st[r->claim = r->n++] = hot_stmt(w, H_CLAIM, 5, r->ca.vals);
  }
  int rc = r->n ? pgq_pipeline_send(w->c, r->st, r->n) : 1;
  r->sent = rc == 0;
  if (rc < 0) {
    snprintf(w->err, sizeof w->err, "%s", r->st[0].err);
    disconnect(w, w->err);
  }
}

/* Reads statement i of r (in order; -1: not part of this round): its result, or NULL when
** it failed or was not sent, with its error. */
static PGresult *round_read(struct wstate *w, struct round *r, int i, const char **err) {
  if (i >= 0 && r->sent && w->c && pgq_pipeline_read(w->c, &r->st[i], i == r->n - 1) != 0) {
    r->sent = 0;
    snprintf(w->err, sizeof w->err, "%s", r->st[i].err);
    disconnect(w, w->err);
  }
  *err = i >= 0 && r->st[i].err[0] ? r->st[i].err : "not connected";
  return i >= 0 ? r->st[i].res : NULL;
}

static void round_once(struct wstate *w) {
  struct pgq *p = w->p;
  pthread_mutex_lock(&p->lock);
  struct pgq_pub *pubs = p->pubs;
  struct pgq_fin *fins = p->fins;
  p->pubs = NULL;
  p->pubs_tail = &p->pubs;
  p->fins = NULL;
  p->fins_tail = &p->fins;
  int progress = p->progress_dirty;
  pthread_mutex_unlock(&p->lock);
  struct pgq_pub *batch, *keyed;
  size_t nbatch = pubs_split(pubs, &batch, &keyed);
  int64_t now = mono_ms();
  size_t want = w->c ? claim_want(w, now, batch != NULL) : 0;
  struct round r = {0};
  round_send(w, &r, batch, fins, want);
  const char *ierr, *ferr, *cerr;
  PGresult *ires = round_read(w, &r, r.ins, &ierr);
  int ins_failed = batch && !ires;
  PQclear(ires);
  for (struct pgq_pub *u = ires ? batch : NULL; u; u = u->next) u->rc = JQ_OK;
  if (batch && !ins_failed) {
    pubs_settle(w, batch, NULL);                   /* answered now; batch is gone */
    batch = NULL;
  }
  PGresult *fres = round_read(w, &r, r.fin, &ferr);
  if (fins && fres) pgq_fins_applied(w, fins, fres);
  PGresult *cres = round_read(w, &r, r.claim, &cerr);
  if (r.claim >= 0) claim_take(w, now, cres, want, cerr);
  if (batch || keyed) {                            /* the pipeline is read: the slow ways */
    pubs_retry_and_keyed(w, batch, nbatch, ins_failed, ierr, keyed);
    pubs_settle(w, batch, keyed);
  }
  if (fins && !fres) pgq_fins_retry(w, fins);
  buf_free(&r.bi);
  buf_free(&r.bf);
  now = mono_ms();
  if (w->c && now >= w->next_renew) renew(w, now);
  if (w->c && progress) write_progress(w);
  if (w->c && now >= w->next_house) housekeep(w, now);
  if (w->c && w->notify_pending && now >= w->last_notify + NOTIFY_GAP_MS) send_notify(w, now);
  read_notifies(w);
}

static int64_t earliest(int64_t a, int64_t b) { return b && b < a ? b : a; }

/* Sleeps until there is work, a notification or a timer (at most a second). */
static void wait_work(struct wstate *w) {
  struct pgq *p = w->p;
  int64_t now = mono_ms(), until = now + 1000;
  pthread_mutex_lock(&p->lock);
  int pending = p->pubs || (p->fins && w->c) || p->stopped == 2;
  int demand = !p->draining && p->waiting > p->nbuf;
  int held = p->nheld > 0;
  if (demand && (p->kick || w->deep)) pending = 1;
  pthread_mutex_unlock(&p->lock);
  if (pending) return;
  if (!w->c) until = earliest(until, w->next_connect);
  else {
    if (held) until = earliest(until, w->next_renew);
    until = earliest(until, w->next_house);
    if (w->notify_pending) until = earliest(until, w->last_notify + NOTIFY_GAP_MS);
    if (demand) until = earliest(until, earliest(w->next_poll, w->next_due));
  }
  int timeout = until > now ? (int)(until - now) : 0;
  struct pollfd fds[2] = {{.fd = p->efd, .events = POLLIN}, {.fd = w->lc ? PQsocket(w->lc) : -1, .events = POLLIN}};
  if (timeout > 0 && poll(fds, 2, timeout) > 0 && (fds[0].revents & POLLIN)) {
    uint64_t v;
    ssize_t r = read(p->efd, &v, sizeof v);
    (void)r;
  }
}

/* Fails every queued publish (the host is closing). */
static void fail_pubs(struct pgq *p) {
  pthread_mutex_lock(&p->lock);
  struct pgq_pub *u = p->pubs;
  p->pubs = NULL;
  p->pubs_tail = &p->pubs;
  pthread_mutex_unlock(&p->lock);
  for (struct pgq_pub *next; u; u = next) {
    next = u->next;
    u->rc = JQ_DRAINING;
    snprintf(u->err, sizeof u->err, "queue %s is shutting down", p->name);
    pgq_pub_done(u);
  }
}

void *pgq_writer_main(void *arg) {
  struct wstate w = {.p = arg};
  struct pgq *p = w.p;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    int closing = p->stopped == 2;
    pthread_mutex_unlock(&p->lock);
    if (!w.c) wconnect(&w);
    round_once(&w);
    if (closing) break;
    wait_work(&w);
  }
  fail_pubs(p);
  pthread_mutex_lock(&p->lock);
  size_t left = 0;
  for (struct pgq_fin *f = p->fins, *next; f; f = next, left++) {
    next = f->next;
    pgq_fin_free(f);                     /* its job is in held: pgq_free frees it */
  }
  p->fins = NULL;
  pthread_mutex_unlock(&p->lock);
  if (left)
    log_warn("%s: %zu job outcomes could not be written before exit; those jobs are rescued when "
             "their lease runs out", p->name, left);
  PQfinish(w.c);
  PQfinish(w.lc);
  return NULL;
}
