/*
** pgq_finish.c — a Postgres queue's job outcomes, written by its writer thread
** (pgq_writer.h): one UPDATE per round for every outcome queued (fenced on owner and
** attempt), the counts and on_final for those it applied, a warning for those fenced off,
** and the slow way when the batch fails (each outcome on its own; one the database refuses
** fails its job with the database's message).
**
** Threads: the writer thread only; it takes p->lock to update counts and held jobs.
*/
#include "pgq_writer.h"
#include "base/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finish, renew and progress find their rows by seq and fence on owner and attempt. The
** planner often drives the finish from the lease index (this host's running rows, filtered
** by owner) and compares each with every outcome: that costs outcomes × this host's running
** jobs, bounded by its consumers plus one claim (≤ 500), and measured faster end to end than
** the key lookups (scripts/bench-jobs, 3 hosts: 22k against 19k jobs/s). */
const char PGQ_SQL_FINISH[] =
  "UPDATE taskhost_jobs j SET state = f.st, result = f.r,"
  " errors = CASE WHEN f.e IS NULL THEN j.errors"
  "  ELSE coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(f.e) END,"
  " run_at = CASE WHEN f.d IS NULL THEN j.run_at ELSE now() + f.d * interval '1 millisecond' END,"
  " finished_at = CASE WHEN f.st >= 4 THEN now() END, attempt = j.attempt - f.u,"
  " progress = coalesce(f.p, j.progress), owner = NULL, lease_until = NULL, cancel_requested = false"
  " FROM json_to_recordset($1::json) AS f(s bigint, a int, st smallint, r text, p text, e jsonb, d bigint, u int)"
  " WHERE j.seq = f.s AND j.attempt = f.a AND j.owner = $2 AND j.state = 2 RETURNING j.seq";
static void put_fin(const struct pgq_fin *f, struct buf *b) {
  buf_addc(b, b->len ? ',' : '[');
  buf_printf(b, "{\"s\":%lld,\"a\":%d,\"st\":%d,\"u\":%d,\"r\":", (long long)f->j->seq, f->j->attempt,
             f->state, f->undo);
  pgq_put_str_or_null(b, f->result);
  buf_adds(b, ",\"p\":");
  pgq_put_str_or_null(b, f->j->progress);
  buf_printf(b, ",\"e\":%s,\"d\":", f->error ? f->error : "null");
  if (f->delay_ms >= 0) buf_printf(b, "%lld}", (long long)f->delay_ms);
  else buf_adds(b, "null}");
}

void pgq_fin_free(struct pgq_fin *f) {
  free(f->result);
  free(f->error);
  free(f->errtext);
  free(f);
}

/* Puts list back at the head of the finish queue (the connection went: write it later). */
static void fins_requeue(struct pgq *p, struct pgq_fin *list) {
  if (!list) return;
  struct pgq_fin *tail = list;
  while (tail->next) tail = tail->next;
  pthread_mutex_lock(&p->lock);
  tail->next = p->fins;
  if (!p->fins) p->fins_tail = &tail->next;
  p->fins = list;
  pthread_mutex_unlock(&p->lock);
}

/* A written (or fenced) outcome: counts, on_final, and the job is freed. */
static void fin_done(struct wstate *w, struct pgq_fin *f, int applied) {
  struct pgq *p = w->p;
  struct job *j = f->j;
  int final = job_state_final(f->state);
  if (!applied)
    log_warn("%s: job %s attempt %d: its lease was lost (another host took the job over); this "
             "outcome (%s) is dropped", p->name, j->id, j->attempt, job_state_name(f->state));
  pthread_mutex_lock(&p->lock);
  if (applied && final) { p->st.finished++; if (p->live_est) p->live_est--; }
  if (p->running_est) p->running_est--;           /* it no longer runs here either way */
  if (applied && f->state == JS_RETRYING) p->st.retries++;
  if (applied && !final) p->kick = 1;
  pgq_held_remove(p, j);
  pthread_mutex_unlock(&p->lock);
  if (applied && f->delay_ms >= 0) {
    int64_t due = mono_ms() + f->delay_ms;
    if (!w->next_due || due < w->next_due) w->next_due = due;
  }
  if (applied && final && p->cfg.on_final)
    p->cfg.on_final(p->cfg.on_final_ud, p->name, j->id, f->state, j->attempt - f->undo, f->errtext, f->errlen);
  pgq_job_free(j);
  pgq_fin_free(f);
}

void pgq_fins_json(struct pgq_fin *list, struct buf *b) {
  for (struct pgq_fin *f = list; f; f = f->next) put_fin(f, b);
  buf_adds(b, "]");
  buf_addc(b, '\0');
}

/* The finish UPDATE's result r (the seqs it applied) for the outcomes of list; frees r. */
void pgq_fins_applied(struct wstate *w, struct pgq_fin *list, PGresult *r) {
  int m = PQntuples(r);
  int64_t *done = xmalloc(((size_t)m + 1) * sizeof *done);
  for (int i = 0; i < m; i++) done[i] = pgq_int(r, i, 0);
  PQclear(r);
  qsort(done, (size_t)m, sizeof *done, jobq_cmp_i64);
  for (struct pgq_fin *f = list, *next; f; f = next) {
    next = f->next;
    fin_done(w, f, bsearch(&f->j->seq, done, (size_t)m, sizeof *done, jobq_cmp_i64) != NULL);
  }
  free(done);
}

/* One UPDATE for the outcomes of list: 0, or -1 (nothing applied; w->err). */
static int finish_sql(struct wstate *w, struct pgq_fin *list) {
  struct buf b;
  buf_init(&b);
  pgq_fins_json(list, &b);
  char owner[24];
  snprintf(owner, sizeof owner, "%" PRId64, w->p->owner);
  const char *vals[] = {b.data, owner};
  PGresult *r = pgq_wexec(w, w->c, PGQ_SQL_FINISH, 2, vals);
  buf_free(&b);
  if (!r) return -1;
  pgq_fins_applied(w, list, r);
  return 0;
}

/* An outcome the database refuses (say, a result that is not valid text) fails the job with
** the database's message instead, so the job does not wait for its lease to run out. */
static void finish_one(struct wstate *w, struct pgq_fin *f) {
  f->next = NULL;
  if (finish_sql(w, f) == 0 || !w->c) {
    if (!w->c) fins_requeue(w->p, f);
    return;
  }
  char msg[320];
  snprintf(msg, sizeof msg, "the job's outcome could not be stored: %s", w->err);
  log_error("%s: job %s: %s", w->p->name, f->j->id, msg);
  free(f->result);
  free(f->error);
  free(f->errtext);
  f->result = NULL;
  f->state = JS_FAILED;
  f->delay_ms = -1;
  f->error = pgq_error_item(f->j->attempt, jobq_now_ms(), msg, strlen(msg));
  f->errtext = xstrdup(msg);
  f->errlen = strlen(msg);
  if (finish_sql(w, f) != 0) {
    if (!w->c) { fins_requeue(w->p, f); return; }
    log_error("%s: job %s: %s; it is left to the lease rescue", w->p->name, f->j->id, w->err);
    pthread_mutex_lock(&w->p->lock);
    pgq_held_remove(w->p, f->j);
    pthread_mutex_unlock(&w->p->lock);
    pgq_job_free(f->j);
    pgq_fin_free(f);
  }
}

/* The batch UPDATE of list failed: requeue it (no connection) or write each on its own. */
void pgq_fins_retry(struct wstate *w, struct pgq_fin *list) {
  if (!w->c) { fins_requeue(w->p, list); return; }
  for (struct pgq_fin *f = list, *next; f; f = next) {
    next = f->next;
    if (!w->c) { fins_requeue(w->p, f); return; }   /* f and the rest */
    finish_one(w, f);
  }
}
