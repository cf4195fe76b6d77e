/*
** pgq.c — see pgq.h. The caller side: open/free, publish, claim, begin, finish, shutdown.
** The writer thread is in pgq_writer.c:
**
** The writer runs rounds. A round takes every publish and finish queued since the last one
** and writes them as one statement each (group commit: a burst of publishes from many
** threads costs one INSERT, a burst of finishes one UPDATE), renews leases when due, writes
** progress, and claims when consumers wait and there may be work: a NOTIFY for this queue,
** a publish on this host, the last claim came back full, a due scheduled/retrying job, or
** the poll interval passed. It claims (waiting consumers − buffered jobs) jobs; when the
** queue is deep and has no max_concurrent, times what keeps a consumer busy for 2 ms of
** recent run time (1 to 64), at most 500: an idle host claims only what it can run, a host
** never sits on long jobs another could start, and notifications do not stampede. Between rounds it sleeps in poll() on its
** eventfd and the LISTEN connection's socket.
**
** Once a second it counts the queue's unfinished jobs (capacity checks use that count plus
** this host's publishes since: across hosts capacity is a soft bound), and tries the leader's
** advisory lock (session-level, on the LISTEN connection: it goes when the host dies); the
** leader rescues jobs whose lease ran out (attempt counted, "worker lost", failed after
** max_recoveries) and prunes finished jobs past retention, 10 000 rows per pass.
**
** Threads: see pgq_impl.h. The writer owns its two PGconns; consumer threads own the jobs
** they were handed until pgq_finish, after which the writer owns (and frees) them.
*/
#include "pgq_impl.h"
#include "base/log.h"
#include "base/uuid.h"
#include "value/json.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

uint64_t pgq_rand(struct pgq *p) {        /* xorshift64* (lock held) */
  p->rnd ^= p->rnd >> 12;
  p->rnd ^= p->rnd << 25;
  p->rnd ^= p->rnd >> 27;
  return p->rnd * 2685821657736338717ULL;
}

void pgq_wake_writer(struct pgq *p) {
  uint64_t one = 1;
  ssize_t r = write(p->efd, &one, sizeof one);
  (void)r;                                        /* EAGAIN: a wake-up is pending anyway */
}

void pgq_job_free(struct job *j) {
  free(j->id);
  free(j->data);
  free(j->headers);
  free(j->progress);
  free(j);
}

void pgq_held_remove(struct pgq *p, struct job *j) {
  for (size_t i = 0; i < p->nheld; i++)
    if (p->held[i] == j) {
      p->held[i] = p->held[--p->nheld];
      return;
    }
}

void pgq_cancel_local(struct pgq *p, int64_t seq) {
  for (size_t i = 0; i < p->nheld; i++) {
    struct job *j = p->held[i];
    int zero = 0;
    if (j->seq != seq || !atomic_compare_exchange_strong(&j->cancel, &zero, 1)) continue;
    if (j->wake) j->wake(j->wake_arg);
  }
}

/* ---- lifecycle -------------------------------------------------------------------- */

struct pgq *pgq_open(const struct jobq_config *cfg, const struct pgq_config *pc, char *err,
                     size_t errlen) {
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(pc->dsn, &perr);
  if (!opts) {
    snprintf(err, errlen, "%s: dsn: %.*s", cfg->name, perr ? (int)strcspn(perr, "\n") : 7,
             perr ? perr : "invalid");
    PQfreemem(perr);
    return NULL;
  }
  PQconninfoFree(opts);
  char cerr[256];
  PGconn *c = pgq_connect(pc->dsn, cerr, sizeof cerr);
  if (c && pgq_migrate(c, cerr, sizeof cerr) != 0) {
    snprintf(err, errlen, "%s: %s", cfg->name, cerr);
    PQfinish(c);
    return NULL;
  }
  if (!c) log_warn("%s: the database does not answer yet (%s); publishes fail until it does", cfg->name, cerr);
  PQfinish(c);              /* the writer and reader connect on their own threads */
  struct pgq *p = xcalloc(1, sizeof *p);
  p->cfg = *cfg;
  p->name = xstrdup(cfg->name);
  p->cfg.name = p->name;
  p->dsn = xstrdup(pc->dsn);
  p->lease_ms = pc->lease_ns / NS_PER_MS > 300 ? pc->lease_ns / NS_PER_MS : 300;
  p->poll_ms = pc->poll_ns / NS_PER_MS > 10 ? pc->poll_ns / NS_PER_MS : 10;
  p->notify = pc->notify;
  if (getrandom(&p->rnd, sizeof p->rnd, 0) != sizeof p->rnd || !p->rnd)
    p->rnd = (uint64_t)clock_mono_ns() | 1;
  p->owner = (int64_t)(pgq_rand(p) >> 1) | 1;
  p->run_ewma_ns = NS_PER_MS;
  pthread_mutex_init(&p->lock, NULL);
  cond_init_monotonic(&p->cv);
  pthread_cond_init(&p->ops_cv, NULL);
  p->pubs_tail = &p->pubs;
  p->fins_tail = &p->fins;
  p->ops_tail = &p->ops;
  atomic_store(&p->up, c != NULL);
  p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->efd < 0 || pthread_create(&p->writer, NULL, pgq_writer_main, p) != 0) {
    snprintf(err, errlen, "%s: cannot start the queue's writer thread: %s", cfg->name, strerror(errno));
    if (p->efd >= 0) close(p->efd);
    free(p->name); free(p->dsn); free(p);
    return NULL;
  }
  p->writer_started = 1;
  p->reader_started = pthread_create(&p->reader, NULL, pgq_reader_main, p) == 0;
  return p;
}

void pgq_free(struct pgq *p) {
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  p->stopped = 2;                                 /* 2: the threads end after their last work */
  pthread_cond_broadcast(&p->cv);
  pthread_cond_broadcast(&p->ops_cv);
  pthread_mutex_unlock(&p->lock);
  pgq_wake_writer(p);
  if (p->writer_started) pthread_join(p->writer, NULL);
  if (p->reader_started) pthread_join(p->reader, NULL);
  for (size_t i = 0; i < p->nheld; i++) pgq_job_free(p->held[i]);
  free(p->held);
  free(p->buf);
  waitlog_free(&p->waits);
  close(p->efd);
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->cv);
  pthread_cond_destroy(&p->ops_cv);
  free(p->name);
  free(p->dsn);
  free(p);
}

/* ---- publish ---------------------------------------------------------------------- */

/* 12 hex digits of the wall clock in ms, then 12 random ones (lock held): hosts share the id
** space (a clash would need the same ms and the same 48 random bits), and ids of jobs
** published together are neighbours in the (queue, jid) index, so every row version a job
** adds there lands on the few pages recently touched instead of on a random page
** (scripts: 50 000 jobs claimed and finished went from 3.5–4.0 s with random ids to 2.8 s). */
static void gen_id(struct pgq *p, char out[JOBQ_ID_MAX]) {
  if (p->cfg.uuid_ids && uuid_v4(out) == 0) return;
  snprintf(out, JOBQ_ID_MAX, "%012llx%012llx", (unsigned long long)jobq_now_ms() & 0xffffffffffffULL,
           (unsigned long long)(pgq_rand(p) >> 16));
}

/* Queues pub for the writer: JQ_OK, or why it is refused now (err; pub not queued). */
static int enqueue(struct pgq *p, struct pgq_pub *pub, char *err, size_t errlen) {
  static const char *const names[] = {"id", "idempotency key"};
  const char *const vals[] = {pub->o->id, pub->o->idem_key};
  for (int i = 0; i < 2; i++) {
    size_t n = vals[i] ? strlen(vals[i]) : 1;
    if (n >= 1 && n <= JOBQ_KEY_MAX) continue;
    snprintf(err, errlen, "the job's %s must be 1 to %d bytes long (got %zu)", names[i], JOBQ_KEY_MAX, n);
    return JQ_INVALID;
  }
  pthread_mutex_lock(&p->lock);
  int rc = p->draining ? JQ_DRAINING : !atomic_load(&p->up) ? JQ_UNAVAILABLE : JQ_OK;
  if (rc == JQ_OK && p->cfg.capacity && p->live_est + pub->n > p->cfg.capacity) rc = JQ_FULL;
  if (rc == JQ_OK && p->cfg.max_waiting &&
      p->live_est - (p->running_est < p->live_est ? p->running_est : p->live_est) + pub->n > p->cfg.max_waiting)
    rc = JQ_FULL;
  if (rc != JQ_OK) {
    if (rc == JQ_FULL) p->st.rejected_full += pub->n;
    if (rc == JQ_DRAINING) p->st.rejected_draining += pub->n;
    size_t live = p->live_est;
    pthread_mutex_unlock(&p->lock);
    if (rc == JQ_DRAINING) snprintf(err, errlen, "queue %s is shutting down", p->name);
    else if (rc == JQ_FULL) snprintf(err, errlen, "queue %s is full (%zu unfinished jobs)", p->name, live);
    else snprintf(err, errlen, "queue %s: its database is not reachable; try again later", p->name);
    return rc;
  }
  for (size_t i = 0; pub->gen && i < pub->n; i++) gen_id(p, pub->gen[i]);
  *p->pubs_tail = pub;
  p->pubs_tail = &pub->next;
  pthread_mutex_unlock(&p->lock);
  pgq_wake_writer(p);
  return JQ_OK;
}

void pgq_pub_done(struct pgq_pub *u) {
  struct jobq_call *c = u->call;
  c->rc = u->rc;
  c->existed = u->existed;
  if (u->rc != JQ_OK) snprintf(c->err, sizeof c->err, "%s", u->err);
  else if (u->gen == u->one && !pgq_pub_keyed(u)) snprintf(c->id_out, sizeof c->id_out, "%s", u->one[0]);
  free(u);
  c->done(c);
}

/* jobq_call_start's publish: as pgq_publish (n == 1) or pgq_publish_many, answered by the
** writer through pgq_pub_done. */
static void start_publish(struct pgq *p, struct jobq_call *c) {
  static const struct jobq_publish_opts none = {.max_retries = -1};
  c->existed = 0;
  c->rc = JQ_OK;
  if (!c->n) { c->done(c); return; }
  struct pgq_pub *u = xcalloc(1, sizeof *u);
  *u = (struct pgq_pub){.n = c->n, .data = c->data, .lens = c->lens, .o = c->o ? c->o : &none,
                        .id_out = c->id_out, .idlen = sizeof c->id_out, .call = c};
  if (c->ids) {                                   /* a batch: ids and keys do not apply */
    u->opts = *u->o;
    u->opts.id = u->opts.idem_key = NULL;
    u->o = &u->opts;
    u->gen = c->ids;
  } else {
    u->gen = u->o->id ? NULL : u->one;
  }
  int rc = enqueue(p, u, c->err, sizeof c->err);
  if (rc == JQ_OK) return;
  free(u);
  c->rc = rc;
  c->done(c);
}

void pgq_call_start(struct pgq *p, struct jobq_call *c) {
  if (c->op == JC_PUBLISH) start_publish(p, c);
  else pgq_op_start(p, c);
}

static void wake_sync(struct jobq_call *c) { jobq_waiter_signal(c->ud, 1); }

void pgq_call_run(struct pgq *p, struct jobq_call *c) {
  struct waiter w;
  jobq_waiter_init(&w);
  c->done = wake_sync;
  c->ud = &w;
  pgq_call_start(p, c);
  jobq_waiter_wait(&w);
}

int pgq_publish(struct pgq *p, const char *data, size_t len, const struct jobq_publish_opts *o,
                char *id_out, size_t idlen, int *existed, char *err, size_t errlen) {
  struct jobq_call c = {.op = JC_PUBLISH, .n = 1, .data = &data, .lens = &len, .o = o};
  pgq_call_run(p, &c);
  *existed = c.existed;
  if (c.rc == JQ_OK) snprintf(id_out, idlen, "%s", c.id_out);
  else snprintf(err, errlen, "%s", c.err);
  return c.rc;
}

int pgq_publish_many(struct pgq *p, const char *const *data, const size_t *lens, size_t n,
                     const struct jobq_publish_opts *o, char (*ids)[JOBQ_ID_MAX], char *err,
                     size_t errlen) {
  struct jobq_call c = {.op = JC_PUBLISH, .n = n, .data = data, .lens = lens, .o = o, .ids = ids};
  pgq_call_run(p, &c);
  if (c.rc != JQ_OK) snprintf(err, errlen, "%s", c.err);
  return c.rc;
}

/* ---- claim, begin, finish (consumer threads) ---------------------------------------- */

size_t pgq_claim_batch(struct pgq *p, int64_t until_ns, struct job **out, size_t max) {
  pthread_mutex_lock(&p->lock);
  size_t n = 0;
  while (!p->stopped) {
    if (p->nbuf && !p->draining) {
      size_t share = p->nbuf / (p->waiting + 1);
      n = share < 1 ? 1 : share;
      if (n > max) n = max;
      memcpy(out, p->buf, n * sizeof *out);
      memmove(p->buf, p->buf + n, (p->nbuf - n) * sizeof *p->buf);
      p->nbuf -= n;
      p->reserved += n;
      break;
    }
    p->waiting++;
    pgq_wake_writer(p);
    if (!until_ns) pthread_cond_wait(&p->cv, &p->lock);
    else {
      struct timespec ts = ns_timespec(until_ns);
      pthread_cond_timedwait(&p->cv, &p->lock, &ts);
    }
    p->waiting--;
    if (until_ns && clock_mono_ns() >= until_ns) break;
  }
  pthread_mutex_unlock(&p->lock);
  return n;
}

int pgq_begin(struct pgq *p, struct job *j) {
  pthread_mutex_lock(&p->lock);
  p->reserved--;
  int flag = p->draining ? 2 : atomic_load(&j->cancel);
  if (flag == 0) {
    j->claimed = 2;
    p->running++;
    j->claimed_mono = clock_mono_ns();
    j->deadline = p->cfg.timeout_ns ? j->claimed_mono + p->cfg.timeout_ns : 0;
    waitlog_add(&p->waits, &p->st, j->claimed_mono - j->ready_mono);
  }
  pthread_mutex_unlock(&p->lock);
  return flag;
}

void pgq_on_cancel(struct pgq *p, struct job *j, void (*wake)(void *), void *arg) {
  pthread_mutex_lock(&p->lock);
  j->wake = wake;
  j->wake_arg = arg;
  pthread_mutex_unlock(&p->lock);
}

void pgq_set_progress(struct pgq *p, struct job *j, const char *json, size_t len) {
  pthread_mutex_lock(&p->lock);
  free(j->progress);
  j->progress = xstrndup(json, len);
  j->inflight = 1;                                /* progress not written yet */
  p->progress_dirty = 1;
  pthread_mutex_unlock(&p->lock);
}

/* What a finished attempt becomes (lock held). */
static void decide(struct pgq *p, struct job *j, enum job_outcome o, struct pgq_fin *f) {
  f->delay_ms = -1;
  if (j->claimed != 2) {                          /* it never began */
    f->undo = 1;
    f->state = o == JO_CANCELLED ? JS_CANCELLED : JS_QUEUED;
    return;
  }
  p->running--;
  int64_t ran = clock_mono_ns() - j->claimed_mono;
  p->run_ewma_ns += (ran - p->run_ewma_ns) / 8;
  p->st.run_ns_total += (uint64_t)ran;
  p->st.run_count++;
  if (o == JO_OK) f->state = JS_DONE;
  else if (o == JO_REQUEUE) { f->state = JS_QUEUED; f->undo = 1; }
  else if ((o == JO_ERROR || o == JO_TIMEOUT) && j->attempt <= j->max_retries) {
    f->state = JS_RETRYING;
    double r01 = (double)(pgq_rand(p) >> 11) / 9007199254740992.0;
    f->delay_ms = jobq_backoff_ns(&p->cfg, j->attempt, r01) / NS_PER_MS;
  } else f->state = o == JO_CANCELLED ? JS_CANCELLED : JS_FAILED;
}

void pgq_finish(struct pgq *p, struct job *j, enum job_outcome o, const char *text, size_t len) {
  struct pgq_fin *f = xcalloc(1, sizeof *f);
  f->j = j;
  pthread_mutex_lock(&p->lock);
  int began = j->claimed == 2;
  decide(p, j, o, f);
  j->claimed = 0;
  j->wake = NULL;
  if (o == JO_OK && text) f->result = xstrndup(text, len);
  if (o != JO_OK && o != JO_REQUEUE && (began || o == JO_CANCELLED)) {
    f->error = pgq_error_item(j->attempt - f->undo, jobq_now_ms(), text ? text : "", text ? len : 0);
    f->errtext = text ? xstrndup(text, len) : NULL;
    f->errlen = text ? len : 0;
  }
  *p->fins_tail = f;
  p->fins_tail = &f->next;
  pthread_mutex_unlock(&p->lock);
  pgq_wake_writer(p);
}

/* ---- shutdown ---------------------------------------------------------------------- */

/* Buffered jobs go back to the queue (lock held). */
static void return_buffered(struct pgq *p) {
  for (size_t i = 0; i < p->nbuf; i++) {
    struct pgq_fin *f = xcalloc(1, sizeof *f);
    f->j = p->buf[i];
    f->state = JS_QUEUED;
    f->undo = 1;
    f->delay_ms = -1;
    *p->fins_tail = f;
    p->fins_tail = &f->next;
  }
  p->nbuf = 0;
}

void pgq_drain(struct pgq *p) {
  pthread_mutex_lock(&p->lock);
  p->draining = 1;
  return_buffered(p);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->lock);
  pgq_wake_writer(p);
}

void pgq_stop(struct pgq *p) {
  pthread_mutex_lock(&p->lock);
  p->draining = 1;
  if (!p->stopped) p->stopped = 1;
  return_buffered(p);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->lock);
  pgq_wake_writer(p);
}

int pgq_available(struct pgq *p) { return atomic_load(&p->up); }

int pgq_draining(struct pgq *p) {
  pthread_mutex_lock(&p->lock);
  int d = p->draining;
  pthread_mutex_unlock(&p->lock);
  return d;
}

size_t pgq_running(struct pgq *p) {
  pthread_mutex_lock(&p->lock);
  size_t n = p->running;
  pthread_mutex_unlock(&p->lock);
  return n;
}

size_t pgq_interrupt_running(struct pgq *p) {
  size_t n = 0;
  pthread_mutex_lock(&p->lock);
  for (size_t i = 0; i < p->nheld; i++) {
    struct job *j = p->held[i];
    int zero = 0;
    if (j->claimed != 2 || !atomic_compare_exchange_strong(&j->cancel, &zero, 2)) continue;
    if (j->wake) j->wake(j->wake_arg);
    n++;
  }
  pthread_mutex_unlock(&p->lock);
  return n;
}
