/*
** jobq.h — one background-job queue (a `queue.queue` entry): every live job in memory, a
** ready heap (priority, then creation order) and a delayed heap (run_at), a bounded
** capacity, retries with exponential backoff and jitter, per-job timeout, cancel, results,
** error history and progress, and a drain mode for shutdown.
**
** Durability. With a store (jobstore.h, SQLite) every state change is written as a whole
** row; a change becomes *visible* (status, list, result; jobq_job_info) only once its row has
** committed, so nothing a client has seen can be undone by a crash. jobq_publish returns
** after the insert committed (the 202 is durable); a claim commits (attempt counted) before
** the job runs. Without a store (the memory driver) changes apply at once and a crash loses
** everything, by design.
**
** Availability. While the store is unhealthy (jobstore.h: the file is gone, read-only or
** full) publishing answers JQ_UNAVAILABLE and nothing is claimed; every job stays in memory
** and is written again when the store recovers, after which both resume.
**
** Threads: every function may be called from any thread; the queue's state is guarded by
** its mutex. It is never held while waiting for a store commit. The one callback into the
** caller, a job's wake function (job_on_cancel), runs with it held — that is what keeps the
** runner's wake argument alive — so a wake function must not call into the queue.
*/
#ifndef TASKHOST_JOBQ_H
#define TASKHOST_JOBQ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct jobstore;
struct job_row;
struct buf;

enum job_state {
  JS_QUEUED, JS_SCHEDULED, JS_RUNNING, JS_RETRYING, JS_DONE, JS_FAILED, JS_CANCELLED,
  JS_COUNT
};
const char *job_state_name(int state);
int job_state_parse(const char *name);          /* -1 when unknown */
static inline int job_state_final(int s) { return s >= JS_DONE; }

enum jitter { JITTER_FULL, JITTER_EQUAL, JITTER_NONE };

struct jobq_config {
  const char *name;             /* the queue entry's id */
  size_t capacity;              /* live (unfinished) jobs at most */
  uint64_t capacity_bytes;      /* bytes of data held by live jobs at most; 0 = no limit */
  size_t max_waiting;           /* jobs waiting to start (not running, not finished) at most;
                                   0 = no limit beyond capacity */
  int uuid_ids;                 /* generated ids are random UUIDs (v4) rather than short hex */
  int max_retries;              /* default per job */
  int64_t backoff_base_ns, backoff_cap_ns;
  double backoff_factor;
  enum jitter jitter;
  int64_t timeout_ns;           /* per attempt; 0 = none */
  int64_t retention_ns;         /* finished jobs are forgotten after this; 0 = keep */
  int max_concurrent;           /* running at once over all consumers; 0 = unlimited */
  int max_recoveries;           /* crash recoveries before a job fails as "worker lost" */
  /* Called when a job reaches a final state through a runner or a cancel (not at boot
  ** recovery), on that thread, with the queue unlocked; error: the last error or NULL.
  ** NULL = nobody. */
  void (*on_final)(void *ud, const char *queue, const char *id, int state, int attempt,
                   const char *error, size_t error_len);
  void *on_final_ud;
};

/* The delay before retry number `retry` (1 = first retry), before jitter is applied: base ·
** factor^(retry-1), capped. With jitter: FULL uniform in [0, d], EQUAL in [d/2, d]. r01 is a
** uniform random number in [0, 1). */
int64_t jobq_backoff_ns(const struct jobq_config *c, int retry, double r01);

struct jobq;
struct job;                     /* opaque; valid while claimed, until jobq_finish */

struct jobq *jobq_new(const struct jobq_config *cfg, struct jobstore *store);
void jobq_free(struct jobq *q);   /* no worker may hold a job */
/* A queue whose jobs live in Postgres (pgq.h): every operation below goes to pg, which the
** queue owns from now on (jobq_free frees it). */
struct pgq;
struct jobq *jobq_new_pg(const struct jobq_config *cfg, struct pgq *pg);

/* Boot recovery, before any publish or claim: takes a stored row of this queue. A job left
** running by a crashed host goes to retrying (the crash counts as an attempt), or to failed
** ("worker lost") after max_recoveries. Finished jobs past retention are dropped. */
void jobq_restore(struct jobq *q, const struct job_row *r);

/* The longest caller-given id or idempotency key, in bytes (longer ones are refused). */
#define JOBQ_KEY_MAX 255

struct jobq_publish_opts {
  const char *id;               /* NULL: generated; else 1..JOBQ_KEY_MAX bytes */
  const char *idem_key;         /* NULL: none; else 1..JOBQ_KEY_MAX bytes */
  int64_t delay_ns;             /* run no earlier than now + delay */
  int priority;                 /* smaller first; default 0 */
  int max_retries;              /* < 0: the queue's default */
  const char *headers;          /* NULL: none; else message headers as a JSON object (copied) */
};

enum { JQ_OK = 0, JQ_ERROR = -1, JQ_FULL = -2, JQ_DRAINING = -3, JQ_UNAVAILABLE = -4,
       JQ_INVALID = -5, JQ_CONFLICT = -6 };

/* Adds a job; returns JQ_OK with its id in id_out (capacity idlen, JOBQ_KEY_MAX + 1 fits
** every id), *existed = 1 when the id or the idempotency key names a job already there
** (nothing added). JQ_FULL when the queue holds capacity live jobs or max_waiting jobs
** waiting to start; JQ_INVALID: an empty or too long id / key; JQ_UNAVAILABLE: the store is
** not writable (nothing added, nothing stored). */
int jobq_publish(struct jobq *q, const char *data, size_t len, const struct jobq_publish_opts *o,
                 char *id_out, size_t idlen, int *existed, char *err, size_t errlen);

/* Adds n jobs in one go (one commit wait): all, or none when there is no room for all.
** Options apply to every job (their id and idem_key are ignored); ids get the new ids. */
#define JOBQ_ID_MAX 40
int jobq_publish_many(struct jobq *q, const char *const *data, const size_t *lens, size_t n,
                      const struct jobq_publish_opts *o, char (*ids)[JOBQ_ID_MAX], char *err,
                      size_t errlen);

/* Waits for jobs to run (ready, and under max_concurrent) and claims up to max of them (more
** than one only when the queue is deep and has no max_concurrent); returns how many, 0 once
** the queue stops (jobq_stop) or `until_ns` (monotonic; 0 = no limit) passes. Each claimed
** job must then go through job_begin and jobq_finish, in order.
** A claimed job is *reserved*, not running: it stays visible as queued (or as it was), counts
** as waiting, and is not counted in jobq_running, though it does count against
** max_concurrent (so running + reserved ≤ max_concurrent). With a store the claim commits
** one row per job saying running with the next attempt before returning, so a crash after
** the claim counts the attempt (recovery: "worker lost") whether or not the job began. */
size_t jobq_claim_batch(struct jobq *q, int64_t until_ns, struct job **out, size_t max);
/* When a claimed job is about to run: it becomes running (visible once the store writes
** pending are committed, so after the runner's previous job is visible as finished), its
** attempt is counted, started_at and its clock (timeout, enqueue→start, run time) start. Returns 0: run it; 1: it
** was cancelled while reserved; 2: the queue is draining (or it was stopped). On 1 or 2 the
** job did not become running; finish it with JO_CANCELLED / JO_REQUEUE without running it. */
int job_begin(struct jobq *q, struct job *j);
/* jobq_claim_batch of one job, and job_begin. */
struct job *jobq_claim(struct jobq *q, int64_t until_ns);

/* What a claimed job exposes to its runner. */
const char *job_id(const struct job *j);
const char *job_data(const struct job *j, size_t *len);
const char *job_headers(const struct job *j);    /* JSON object text, or NULL */
int job_attempt(const struct job *j);
int job_max_retries(const struct job *j);
int64_t job_deadline(const struct job *j);       /* monotonic ns; 0 = none */
/* Set when the job was cancelled while running; the runner's Lua call watches it. */
_Atomic int *job_cancel_flag(struct job *j);
/* Called (from the cancelling thread, with the queue locked: it must not call into the
** queue) right after the flag is set, to wake the runner. */
void job_on_cancel(struct jobq *q, struct job *j, void (*wake)(void *), void *arg);
void job_set_progress(struct jobq *q, struct job *j, const char *json, size_t len);

enum job_outcome {
  JO_OK,          /* result: JSON text (may be NULL) */
  JO_ERROR,       /* retry while attempts remain, else failed */
  JO_FATAL,       /* failed, no retry */
  JO_TIMEOUT,     /* an error: retried like JO_ERROR */
  JO_CANCELLED,   /* it was cancelled: cancelled, never retried */
  JO_REQUEUE      /* shutdown stopped it: back to queued, the attempt is not counted */
};
/* Ends a claimed job; `text` is the result (JO_OK) or the error message. */
void jobq_finish(struct jobq *q, struct job *j, enum job_outcome o, const char *text, size_t len);

/* Cancel. Returns the state the job was in (its final state unchanged for a finished job), or
** -1 for an unknown id (with the postgres driver also JQ_UNAVAILABLE while the database is
** unreachable; so for forget, job_info and job_result). Queued/scheduled/retrying jobs become cancelled at once; a running
** one gets its cancel flag set and ends as cancelled when its runner stops. */
int jobq_cancel(struct jobq *q, const char *id);
/* An operator's hand (the dashboard, the job API). Each returns the state the job was in, -1
** for an unknown id, JQ_CONFLICT for a job in a state the call does not take (or one still
** settling: its final row not written yet; or, for retry, one whose idempotency key a live
** job now holds), and for retry also JQ_FULL / JQ_DRAINING / JQ_UNAVAILABLE as a publish.
** jobq_retry: a failed or cancelled job runs again — queued now, its attempts counted afresh
** (max_retries applies again), its error history kept, its result cleared.
** jobq_requeue: a scheduled or retrying job runs now instead of at its run_at. */
int jobq_retry(struct jobq *q, const char *id);
int jobq_requeue(struct jobq *q, const char *id);
/* Why a JQ_CONFLICT from jobq_requeue (requeue 1) or jobq_retry (0): one sentence, for the
** job API's and the dashboard's 409. */
const char *jobq_revive_refusal(int requeue);
/* Forgets a finished job (its record, and its row once the store has written the delete):
** 0; 1 when it is not finished (or its final state is not on disk yet); -1 unknown id. */
int jobq_forget(struct jobq *q, const char *id);

/* The job's visible record as a JSON object into out: id, queue, state, attempt,
** max_retries, priority, created_at/run_at/started_at/finished_at (RFC 3339 or null),
** progress, result (finished: done only), errors (array). Returns the visible state, or -1
** for an unknown id. */
int jobq_job_info(struct jobq *q, const char *id, struct buf *out);
/* The result (done) or last error (failed/cancelled) as JSON text into out; returns the
** visible state or -1. */
int jobq_job_result(struct jobq *q, const char *id, struct buf *out);

/* A JSON array of job records (as jobq_job_info) with seq > after, oldest first, at most
** limit, optionally only one state (state < 0: all). *next: the cursor for the next page,
** or 0 when there is none. */
void jobq_list(struct jobq *q, int state, int64_t after, size_t limit, struct buf *out,
               int64_t *next);

struct jobq_stats {
  size_t by_state[JS_COUNT];
  uint64_t published, rejected_full, rejected_draining, retries, finished;
  uint64_t wait_ns_total, run_ns_total;    /* enqueue→start and run time, summed */
  uint64_t wait_count, run_count;
  uint64_t wait_hist[16];                  /* enqueue→start, buckets of jobq_hist_bound */
  int64_t wait_p50_ns, wait_p99_ns;        /* over the last 65536 starts */
  uint64_t live_bytes;                     /* data bytes held by unfinished jobs */
};
void jobq_stats(struct jobq *q, struct jobq_stats *out);
double jobq_hist_bound(int i);             /* upper bound of bucket i in seconds (+Inf last) */

/* Shutdown. jobq_drain: publishing now answers JQ_DRAINING and no new job is claimed;
** jobq_stop: claim returns NULL for every waiter. jobq_running: jobs running now. */
void jobq_drain(struct jobq *q);
void jobq_stop(struct jobq *q);
size_t jobq_running(struct jobq *q);
int jobq_draining(struct jobq *q);
/* 0 while the queue's store is not writable (see Availability), else 1. */
int jobq_available(struct jobq *q);
/* Sets the cancel flag of every running job (the shutdown deadline passed); they end as
** JO_REQUEUE by their runners. Returns how many. */
size_t jobq_interrupt_running(struct jobq *q);
const char *jobq_name(const struct jobq *q);

/* ---- calls that park ------------------------------------------------------------------
** A postgres queue answers publishes and job-record calls after a round trip to its
** database (jobq_call_parks). A caller that can park (a Lua task) starts such a call with
** jobq_call_start and goes on; the driver's thread calls c->done(c) exactly once when it is
** answered — or the caller's own thread does, before jobq_call_start returns, when it fails
** at once (full, unavailable) or the driver has nothing to wait for. Until done the struct
** and everything it points to belong to the queue. jobq_call_run is the same call made
** synchronously (the calling thread waits; the caller's done is not called: the queue may
** use done and ud for the wait). Results are in the out
** fields, as the synchronous function of the same op returns them. */
enum jobq_call_op { JC_PUBLISH, JC_INFO, JC_RESULT, JC_LIST, JC_CANCEL, JC_FORGET, JC_STATS, JC_RETRY,
                    JC_REQUEUE };
struct jobq_call {
  enum jobq_call_op op;
  void (*done)(struct jobq_call *c);
  void *ud;                     /* for done's use */
  /* in: JC_PUBLISH with ids NULL: one job (n = 1) as jobq_publish, o->id / o->idem_key
  ** apply; with ids: n jobs as jobq_publish_many (their id and key ignored), options o.
  ** JC_INFO/RESULT/CANCEL/FORGET/RETRY/REQUEUE id; JC_LIST state, after, limit */
  size_t n;
  const char *const *data;
  const size_t *lens;
  const struct jobq_publish_opts *o;
  const char *id;
  int state;
  int64_t after;
  size_t limit;
  /* out */
  int rc;                       /* JC_PUBLISH JQ_*; else what jobq_job_info … return */
  int existed;                  /* JC_PUBLISH of one job: it was there already */
  char id_out[JOBQ_KEY_MAX + 1];  /* JC_PUBLISH of one job (ids NULL): its id */
  char (*ids)[JOBQ_ID_MAX];     /* in/out, JC_PUBLISH of n jobs: their ids (the caller's array) */
  char err[256];                /* JC_PUBLISH failure */
  struct buf *out;              /* JC_INFO/RESULT/LIST: JSON is appended here (the caller's) */
  int64_t next;                 /* JC_LIST cursor */
  struct jobq_stats st;         /* JC_STATS */
};
int jobq_call_parks(struct jobq *q);
void jobq_call_start(struct jobq *q, struct jobq_call *c);
void jobq_call_run(struct jobq *q, struct jobq_call *c);

#endif
