/* test_jobq.c — the background-job queue (host/jobs/jobq.c) through host/jobs/jobq.h: backoff and
** jitter, the job state machine (memory driver and SQLite store), retries, outcomes,
** capacity, idempotency, priority, delays, cancel, max_concurrent, drain/stop, listing,
** stats, crash recovery, durability of publish, JSON escaping, retention, concurrency.
** No test asserts an upper bound on elapsed time; every wait is bounded (deadlines a few
** seconds ahead) so a broken queue fails a check instead of hanging. */
#define _GNU_SOURCE
#include "t.h"
#include "jobs/jobq.h"
#include "jobs/jobstore.h"
#include "value/json.h"
#include "base/util.h"

#include <ftw.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ----------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/test_jobq.XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(p);
}

static void remove_tmpdir(void) { nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A path inside the temp dir; static storage, one at a time. */
static const char *tpath(const char *name) {
  static char p[256];
  snprintf(p, sizeof p, "%s/%s", tmpdir, name);
  return p;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {}
}

/* Deadlines for jobq_claim: generous (never reached by a healthy queue), short (for an
** expected NULL), and "do not wait at all" (1 is always in the monotonic past). */
static int64_t soon(void) { return clock_mono_ns() + 3 * NS_PER_S; }
static int64_t in_ms(int ms) { return clock_mono_ns() + (int64_t)ms * NS_PER_MS; }
#define NO_WAIT 1

static struct jobq_config cfg_of(const char *name) {
  return (struct jobq_config){
    .name = name, .capacity = 1000, .max_retries = 0, .backoff_base_ns = NS_PER_MS,
    .backoff_cap_ns = NS_PER_S, .backoff_factor = 2.0, .jitter = JITTER_NONE,
    .timeout_ns = 0, .retention_ns = 0, .max_concurrent = 0, .max_recoveries = 3};
}

static const struct jobq_publish_opts DEFAULT_OPTS = {.max_retries = -1};

/* Publishes data with opts (NULL: defaults); the id goes to id (64 bytes). */
static int pub(struct jobq *q, const char *data, const struct jobq_publish_opts *o, char *id) {
  int existed = -1;
  char err[256] = "";
  int rc = jobq_publish(q, data, strlen(data), o, id, 64, &existed, err, sizeof err);
  if (rc != JQ_OK) printf("  publish: %d %s\n", rc, err);
  else if (existed != 0) printf("  publish: existed=%d\n", existed);
  return rc;
}

/* jobq_job_info / jobq_job_result into shared buffers; "" for an unknown id. */
static struct buf ibuf, rbuf;

static const char *info(struct jobq *q, const char *id) {
  buf_reset(&ibuf);
  buf_adds(&ibuf, "");
  int s = jobq_job_info(q, id, &ibuf);
  return s < 0 ? "" : ibuf.data;
}

static const char *result(struct jobq *q, const char *id) {
  buf_reset(&rbuf);
  buf_adds(&rbuf, "");
  jobq_job_result(q, id, &rbuf);
  return rbuf.data;
}

static int state_of(struct jobq *q, const char *id) {
  struct buf b;
  buf_init(&b);
  int s = jobq_job_info(q, id, &b);
  buf_free(&b);
  return s;
}

#define CHECK_STATE(q, id, name) CHECK_CONTAINS(info(q, id), "\"state\":\"" name "\"")

/* Waiting for a retry: shown as retrying, or as queued once its run_at has come. */
static int waiting_again(struct jobq *q, const char *id) {
  const char *s = info(q, id);
  return strstr(s, "\"state\":\"retrying\"") || strstr(s, "\"state\":\"queued\"");
}

/* JSON checks through the project's decoder: the text decoded into the global v, then
** tostring(expr) evaluated; a malloc'd string, or NULL (message printed) on any error. */
static lua_State *JL;

static char *jeval(const char *json, const char *expr) {
  char err[256], code[512];
  lua_settop(JL, 0);
  if (json_decode(JL, json, strlen(json), err, sizeof err) < 0) {
    printf("  json_decode: %s\n  in: %s\n", err, json);
    return NULL;
  }
  lua_setglobal(JL, "v");
  snprintf(code, sizeof code, "return tostring(%s)", expr);
  if (luaL_dostring(JL, code) != LUA_OK) {
    printf("  lua: %s\n", lua_tostring(JL, -1));
    lua_settop(JL, 0);
    return NULL;
  }
  char *s = xstrdup(lua_tostring(JL, -1));
  lua_settop(JL, 0);
  return s;
}

#define CHECK_J(json, expr, want) do { char *_s = jeval(json, expr); CHECK_STR(_s, want); \
    free(_s); } while (0)

/* The ids of a jobq_list page, in order, joined by ',' into out. */
static void list_ids(const char *json, char *out, size_t outlen) {
  size_t n = 0;
  out[0] = '\0';
  for (const char *p = json; (p = strstr(p, "{\"id\":\"")); ) {
    p += 7;
    const char *e = strchr(p, '"');
    if (!e) break;
    n += (size_t)snprintf(out + n, n < outlen ? outlen - n : 0, "%s%.*s", n ? "," : "",
                          (int)(e - p), p);
    p = e;
  }
}

/* Wake callbacks count their calls. */
static void count_wake(void *arg) { atomic_fetch_add((_Atomic int *)arg, 1); }

/* ---- 1. backoff ------------------------------------------------------------ */

TEST(backoff_none_exact) {
  struct jobq_config c = cfg_of("t:b");
  c.backoff_base_ns = 100 * NS_PER_MS;
  c.backoff_factor = 2.0;
  c.backoff_cap_ns = 300 * NS_PER_MS;
  c.jitter = JITTER_NONE;
  CHECK_INT(jobq_backoff_ns(&c, 1, 0.5), 100 * NS_PER_MS);
  CHECK_INT(jobq_backoff_ns(&c, 2, 0.5), 200 * NS_PER_MS);
  CHECK_INT(jobq_backoff_ns(&c, 3, 0.5), 300 * NS_PER_MS);      /* 400 ms, capped */
  CHECK_INT(jobq_backoff_ns(&c, 10, 0.0), 300 * NS_PER_MS);
  c.backoff_cap_ns = 10 * NS_PER_S;
  CHECK_INT(jobq_backoff_ns(&c, 3, 0.9), 400 * NS_PER_MS);
  CHECK_INT(jobq_backoff_ns(&c, 4, 0.1), 800 * NS_PER_MS);
  c.backoff_base_ns = 1000;
  c.backoff_factor = 1.5;
  CHECK_INT(jobq_backoff_ns(&c, 3, 0.0), 2250);                  /* 1000 * 1.5^2 */
  c.backoff_factor = 1.0;
  CHECK_INT(jobq_backoff_ns(&c, 7, 0.0), 1000);
}

TEST(backoff_jitter_bounds) {
  struct jobq_config c = cfg_of("t:b");
  c.backoff_base_ns = 100 * NS_PER_MS;
  c.backoff_factor = 3.0;
  c.backoff_cap_ns = 5 * NS_PER_S;
  const double rs[] = {0.0, 0.5, 0.999};
  for (int retry = 1; retry <= 6; retry++) {
    c.jitter = JITTER_NONE;
    int64_t d = jobq_backoff_ns(&c, retry, 0.0);
    CHECK(d > 0);
    for (size_t i = 0; i < countof(rs); i++) {
      c.jitter = JITTER_FULL;
      int64_t f = jobq_backoff_ns(&c, retry, rs[i]);
      CHECK(f >= 0 && f <= d);
      c.jitter = JITTER_EQUAL;
      int64_t e = jobq_backoff_ns(&c, retry, rs[i]);
      CHECK(e >= d / 2 && e <= d);
    }
    c.jitter = JITTER_FULL;
    CHECK_INT(jobq_backoff_ns(&c, retry, 0.0), 0);
    CHECK(llabs(jobq_backoff_ns(&c, retry, 0.5) - d / 2) <= 1);
    c.jitter = JITTER_EQUAL;
    CHECK(llabs(jobq_backoff_ns(&c, retry, 0.0) - d / 2) <= 1);
  }
}

TEST(backoff_jitter_spread) {
  struct jobq_config c = cfg_of("t:b");
  c.backoff_base_ns = NS_PER_S;
  c.backoff_cap_ns = 60 * NS_PER_S;
  int64_t d = NS_PER_S * 4;                                    /* retry 3: 1s * 2^2 */
  unsigned short seed[3] = {1, 2, 3};
  int64_t fmin = INT64_MAX, fmax = INT64_MIN, emin = INT64_MAX, emax = INT64_MIN;
  int out_of_range = 0;
  for (int i = 0; i < 1000; i++) {
    double r = erand48(seed);
    c.jitter = JITTER_FULL;
    int64_t f = jobq_backoff_ns(&c, 3, r);
    c.jitter = JITTER_EQUAL;
    int64_t e = jobq_backoff_ns(&c, 3, r);
    if (f < 0 || f > d || e < d / 2 || e > d) out_of_range++;
    if (f < fmin) fmin = f;
    if (f > fmax) fmax = f;
    if (e < emin) emin = e;
    if (e > emax) emax = e;
  }
  CHECK_INT(out_of_range, 0);
  CHECK(fmin < d / 4);
  CHECK(fmax > 3 * d / 4);
  CHECK(emin < d / 2 + d / 8);
  CHECK(emax > d - d / 8);
}

/* Without a cap (backoff_cap_ns = 0) a long retry series overflows int64. */
TEST(backoff_uncapped_overflow) {
  struct jobq_config c = cfg_of("t:b");
  c.backoff_base_ns = NS_PER_S;
  c.backoff_cap_ns = 0;
  c.backoff_factor = 2.0;
  CHECK_INT(jobq_backoff_ns(&c, 11, 0.0), 1024 * NS_PER_S);
    CHECK(jobq_backoff_ns(&c, 100, 0.0) >= 0);
}

/* ---- names ------------------------------------------------------------------ */

TEST(state_names) {
  const char *names[] = {"queued", "scheduled", "running", "retrying", "done", "failed",
                         "cancelled"};
  for (int i = 0; i < JS_COUNT; i++) {
    CHECK_STR(job_state_name(i), names[i]);
    CHECK_INT(job_state_parse(names[i]), i);
  }
  CHECK_INT(job_state_parse("nope"), -1);
  CHECK_STR(job_state_name(-1), "unknown");
  CHECK_STR(job_state_name(JS_COUNT), "unknown");
  CHECK(!job_state_final(JS_RETRYING));
  CHECK(job_state_final(JS_DONE) && job_state_final(JS_FAILED) && job_state_final(JS_CANCELLED));
  for (int i = 1; i < 16; i++) CHECK(jobq_hist_bound(i) > jobq_hist_bound(i - 1));
  CHECK(jobq_hist_bound(15) > 1e300);
}

/* ---- 2. state machine (memory driver) ------------------------------------- */

TEST(memory_lifecycle) {
  struct jobq_config c = cfg_of("t:life");
  c.timeout_ns = 60 * NS_PER_S;
  struct jobq *q = jobq_new(&c, NULL);
  CHECK_STR(jobq_name(q), "t:life");
  char id[64];
  CHECK_INT(pub(q, "{\"n\":1}", NULL, id), JQ_OK);
  CHECK(id[0] != '\0');
  CHECK_INT(state_of(q, id), JS_QUEUED);
  const char *s = info(q, id);
  CHECK_J(s, "v.id", id);
  CHECK_J(s, "v.queue", "t:life");
  CHECK_J(s, "v.state", "queued");
  CHECK_J(s, "v.attempt", "0");
  CHECK_J(s, "v.max_retries", "0");
  CHECK_J(s, "v.started_at", "nil");
  CHECK_J(s, "v.finished_at", "nil");
  CHECK_J(s, "#v.errors", "0");
  CHECK_J(s, "v.created_at:match('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$') ~= nil",
          "true");
  CHECK_INT(jobq_job_result(q, id, &rbuf), JS_QUEUED);

  int64_t before = clock_mono_ns();
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (!j) { jobq_free(q); return; }
  CHECK_STR(job_id(j), id);
  size_t len = 0;
  CHECK_STR(job_data(j, &len), "{\"n\":1}");
  CHECK_INT(len, 7);
  CHECK_INT(job_attempt(j), 1);
  CHECK_INT(job_max_retries(j), 0);
  CHECK(job_deadline(j) >= before + 60 * NS_PER_S);
  CHECK_INT(atomic_load(job_cancel_flag(j)), 0);
  CHECK_INT(jobq_running(q), 1);
  s = info(q, id);
  CHECK_J(s, "v.state", "running");
  CHECK_J(s, "v.attempt", "1");
  CHECK_J(s, "type(v.started_at)", "string");
  CHECK_J(s, "v.finished_at", "nil");

  job_set_progress(q, j, "{\"pct\":50}", 10);
  CHECK_J(info(q, id), "v.progress.pct", "50");

  static const char res[] = "{\"sum\":42,\"list\":[1,2]}";
  jobq_finish(q, j, JO_OK, res, sizeof res - 1);
  CHECK_INT(jobq_running(q), 0);
  CHECK_INT(state_of(q, id), JS_DONE);
  s = info(q, id);
  CHECK_J(s, "v.state", "done");
  CHECK_J(s, "v.result.sum", "42");
  CHECK_J(s, "v.result.list[2]", "2");
  CHECK_J(s, "type(v.finished_at)", "string");
  CHECK_J(s, "#v.errors", "0");
  CHECK_INT(jobq_job_result(q, id, &rbuf), JS_DONE);
  CHECK_STR(result(q, id), res);
  CHECK_INT(state_of(q, "nope"), -1);
  CHECK_INT(jobq_job_result(q, "nope", &rbuf), -1);
  jobq_free(q);
}

TEST(no_timeout_no_deadline_and_null_result) {
  struct jobq_config c = cfg_of("t:nt");
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  CHECK_INT(pub(q, "1", NULL, id), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) {
    CHECK_INT(job_deadline(j), 0);
    jobq_finish(q, j, JO_OK, NULL, 0);
  }
  CHECK_STATE(q, id, "done");
  CHECK_J(info(q, id), "v.result", "nil");
  CHECK_STR(result(q, id), "null");
  jobq_free(q);
}

TEST(data_is_copied_and_ids_unique) {
  struct jobq_config c = cfg_of("t:ids");
  struct jobq *q = jobq_new(&c, NULL);
  char data[16] = "[1,2,3]", ids[50][64];
  int dup = 0;
  CHECK_INT(pub(q, data, NULL, ids[0]), JQ_OK);
  memset(data, 'x', 7);                                        /* the caller's memory changes */
  for (int i = 1; i < 50; i++) CHECK_INT(pub(q, "0", NULL, ids[i]), JQ_OK);
  for (int i = 0; i < 50; i++)
    for (int k = 0; k < i; k++) dup += strcmp(ids[i], ids[k]) == 0;
  CHECK_INT(dup, 0);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) {
    size_t len;
    CHECK_STR(job_data(j, &len), "[1,2,3]");
    CHECK_STR(job_id(j), ids[0]);
    jobq_finish(q, j, JO_OK, NULL, 0);
  }
  jobq_free(q);
}

/* ---- 3. retries ----------------------------------------------------------- */

TEST(retries_then_failed) {
  struct jobq_config c = cfg_of("t:retry");
  c.max_retries = 2;
  c.backoff_base_ns = NS_PER_MS;
  c.jitter = JITTER_NONE;
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  CHECK_INT(pub(q, "{}", NULL, id), JQ_OK);
  CHECK_J(info(q, id), "v.max_retries", "2");
  const char *msgs[] = {"boom 1", "boom 2", "boom 3"};
  for (int a = 1; a <= 3; a++) {
    struct job *j = jobq_claim(q, soon());
    CHECK(j != NULL);
    if (!j) break;
    CHECK_STR(job_id(j), id);
    CHECK_INT(job_attempt(j), a);
    CHECK_INT(job_max_retries(j), 2);
    CHECK_J(info(q, id), "v.attempt", a == 1 ? "1" : a == 2 ? "2" : "3");
    jobq_finish(q, j, JO_ERROR, msgs[a - 1], strlen(msgs[a - 1]));
    if (a < 3) {
      CHECK(waiting_again(q, id));
      CHECK_INT(jobq_job_result(q, id, &rbuf) == JS_RETRYING ||
                jobq_job_result(q, id, &rbuf) == JS_QUEUED, 1);
    }
  }
  CHECK_STATE(q, id, "failed");
  const char *s = info(q, id);
  CHECK_J(s, "#v.errors", "3");
  CHECK_J(s, "v.errors[1].attempt", "1");
  CHECK_J(s, "v.errors[2].attempt", "2");
  CHECK_J(s, "v.errors[3].attempt", "3");
  CHECK_J(s, "v.errors[1].error", "boom 1");
  CHECK_J(s, "v.errors[2].error", "boom 2");
  CHECK_J(s, "v.errors[3].error", "boom 3");
  CHECK_J(s, "math.type(v.errors[3].at)", "integer");
  CHECK_J(s, "v.result", "nil");
  CHECK_INT(jobq_job_result(q, id, &rbuf), JS_FAILED);
  CHECK_STR(result(q, id), "\"boom 3\"");
  CHECK(jobq_claim(q, in_ms(50)) == NULL);                    /* never again */
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.retries, 2);
  CHECK_INT(st.finished, 1);
  CHECK_INT(st.by_state[JS_FAILED], 1);
  jobq_free(q);
}

TEST(publish_max_retries_override) {
  struct jobq_config c = cfg_of("t:mr");
  c.max_retries = 5;
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64];
  struct jobq_publish_opts o = {.max_retries = 0};
  CHECK_INT(pub(q, "1", &o, a), JQ_OK);
  CHECK_INT(pub(q, "2", &DEFAULT_OPTS, b), JQ_OK);
  CHECK_J(info(q, a), "v.max_retries", "0");
  CHECK_J(info(q, b), "v.max_retries", "5");
  struct job *j = jobq_claim(q, soon());
  CHECK(j && strcmp(job_id(j), a) == 0);
  if (j) jobq_finish(q, j, JO_ERROR, "x", 1);
  CHECK_STATE(q, a, "failed");                                 /* no retry allowed */
  j = jobq_claim(q, soon());
  CHECK(j && strcmp(job_id(j), b) == 0);
  if (j) {
    CHECK_INT(job_max_retries(j), 5);
    jobq_finish(q, j, JO_ERROR, "y", 1);
  }
  CHECK(waiting_again(q, b));
  jobq_free(q);
}

/* ---- 4. outcomes --------------------------------------------------------------- */

TEST(outcome_fatal_no_retry) {
  struct jobq_config c = cfg_of("t:fatal");
  c.max_retries = 3;
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  CHECK_INT(pub(q, "{}", NULL, id), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) jobq_finish(q, j, JO_FATAL, "bad input", 9);
  CHECK_STATE(q, id, "failed");
  CHECK_J(info(q, id), "v.attempt", "1");
  CHECK_J(info(q, id), "#v.errors", "1");
  CHECK_STR(result(q, id), "\"bad input\"");
  CHECK(jobq_claim(q, in_ms(50)) == NULL);
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.retries, 0);
  jobq_free(q);
}

TEST(outcome_timeout_retries) {
  struct jobq_config c = cfg_of("t:to");
  c.max_retries = 1;
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  CHECK_INT(pub(q, "{}", NULL, id), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) jobq_finish(q, j, JO_TIMEOUT, "timed out", 9);
  CHECK(waiting_again(q, id));
  j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) {
    CHECK_INT(job_attempt(j), 2);
    jobq_finish(q, j, JO_TIMEOUT, "timed out again", 15);
  }
  CHECK_STATE(q, id, "failed");
  CHECK_J(info(q, id), "v.errors[2].error", "timed out again");
  CHECK_STR(result(q, id), "\"timed out again\"");
  jobq_free(q);
}

TEST(outcome_cancelled) {
  struct jobq_config c = cfg_of("t:oc");
  c.max_retries = 3;
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  CHECK_INT(pub(q, "{}", NULL, id), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) jobq_finish(q, j, JO_CANCELLED, "cancelled by client", 19);
  CHECK_STATE(q, id, "cancelled");
  CHECK_INT(jobq_job_result(q, id, &rbuf), JS_CANCELLED);
  CHECK_STR(result(q, id), "\"cancelled by client\"");
  CHECK(jobq_claim(q, in_ms(50)) == NULL);
  jobq_free(q);
}

TEST(outcome_requeue_keeps_attempt) {
  struct jobq_config c = cfg_of("t:rq");
  c.max_retries = 0;                          /* a counted attempt would fail it */
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  CHECK_INT(pub(q, "{}", NULL, id), JQ_OK);
  for (int k = 0; k < 3; k++) {
    struct job *j = jobq_claim(q, soon());
    CHECK(j != NULL);
    if (!j) break;
    CHECK_INT(job_attempt(j), 1);
    jobq_finish(q, j, JO_REQUEUE, NULL, 0);
    CHECK_STATE(q, id, "queued");
    CHECK_J(info(q, id), "v.attempt", "0");
    CHECK_J(info(q, id), "#v.errors", "0");
  }
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) {
    CHECK_INT(job_attempt(j), 1);
    jobq_finish(q, j, JO_OK, "1", 1);
  }
  CHECK_STATE(q, id, "done");
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.retries, 0);
  CHECK_INT(st.finished, 1);
  jobq_free(q);
}

/* ---- 5. capacity ------------------------------------------------------------ */

TEST(capacity_full) {
  struct jobq_config c = cfg_of("t:cap");
  c.capacity = 3;
  struct jobq *q = jobq_new(&c, NULL);
  char id[4][64], err[256] = "";
  int existed = -1;
  for (int i = 0; i < 3; i++) CHECK_INT(pub(q, "{}", NULL, id[i]), JQ_OK);
  CHECK_INT(jobq_publish(q, "{}", 2, NULL, id[3], 64, &existed, err, sizeof err), JQ_FULL);
  CHECK_CONTAINS(err, "full");
  CHECK_CONTAINS(err, "t:cap");
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  err[0] = '\0';
  /* a running job still counts */
  CHECK_INT(jobq_publish(q, "{}", 2, NULL, id[3], 64, &existed, err, sizeof err), JQ_FULL);
  if (j) jobq_finish(q, j, JO_OK, NULL, 0);
  CHECK_INT(pub(q, "{}", NULL, id[3]), JQ_OK);
  CHECK_INT(jobq_publish(q, "{}", 2, NULL, id[3], 64, &existed, err, sizeof err), JQ_FULL);
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.rejected_full, 3);
  CHECK_INT(st.published, 4);
  jobq_free(q);
}

/* ---- 6. idempotency ------------------------------------------------------------ */

TEST(idempotent_id_and_key) {
  struct jobq_config c = cfg_of("t:idem");
  struct jobq *q = jobq_new(&c, NULL);
  char id1[64], id2[64], err[256];
  int existed = -1;
  struct jobq_publish_opts o = {.id = "order-17", .max_retries = -1};
  CHECK_INT(jobq_publish(q, "1", 1, &o, id1, sizeof id1, &existed, err, sizeof err), JQ_OK);
  CHECK_INT(existed, 0);
  CHECK_STR(id1, "order-17");
  CHECK_INT(jobq_publish(q, "2", 1, &o, id2, sizeof id2, &existed, err, sizeof err), JQ_OK);
  CHECK_INT(existed, 1);
  CHECK_STR(id2, "order-17");

  struct jobq_publish_opts k = {.idem_key = "key-A", .max_retries = -1};
  char a1[64], a2[64], a3[64];
  CHECK_INT(jobq_publish(q, "3", 1, &k, a1, sizeof a1, &existed, err, sizeof err), JQ_OK);
  CHECK_INT(existed, 0);
  CHECK(strcmp(a1, "order-17") != 0);
  CHECK_INT(jobq_publish(q, "4", 1, &k, a2, sizeof a2, &existed, err, sizeof err), JQ_OK);
  CHECK_INT(existed, 1);
  CHECK_STR(a2, a1);
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.published, 2);

  /* once the keyed job is finished the key is free again; an explicit id stays taken */
  struct job *j;
  while ((j = jobq_claim(q, NO_WAIT))) jobq_finish(q, j, JO_OK, NULL, 0);
  CHECK_STATE(q, a1, "done");
  CHECK_INT(jobq_publish(q, "5", 1, &k, a3, sizeof a3, &existed, err, sizeof err), JQ_OK);
  CHECK_INT(existed, 0);
  CHECK(strcmp(a3, a1) != 0);
  CHECK_INT(jobq_publish(q, "6", 1, &o, id2, sizeof id2, &existed, err, sizeof err), JQ_OK);
  CHECK_INT(existed, 1);
  CHECK_STR(id2, "order-17");
  j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) {
    size_t len;
    CHECK_STR(job_data(j, &len), "5");                        /* the first data, not "4" */
    jobq_finish(q, j, JO_OK, NULL, 0);
  }
  jobq_free(q);
}

/* ---- 7. priority ---------------------------------------------------------------- */

TEST(priority_then_fifo) {
  struct jobq_config c = cfg_of("t:prio");
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64], d[64], e[64];
  struct jobq_publish_opts p5 = {.priority = 5, .max_retries = -1};
  struct jobq_publish_opts p1 = {.priority = 1, .max_retries = -1};
  struct jobq_publish_opts pn = {.priority = -3, .max_retries = -1};
  CHECK_INT(pub(q, "a", &p5, a), JQ_OK);
  CHECK_INT(pub(q, "b", &p1, b), JQ_OK);
  CHECK_INT(pub(q, "d", &p1, d), JQ_OK);
  CHECK_J(info(q, a), "v.priority", "5");
  const char *want[] = {b, d, a};
  for (int i = 0; i < 3; i++) {
    struct job *j = jobq_claim(q, soon());
    CHECK(j != NULL);
    if (!j) break;
    CHECK_STR(job_id(j), want[i]);
    jobq_finish(q, j, JO_OK, NULL, 0);
  }
  /* a retried job goes back by priority, not at the end */
  CHECK_INT(pub(q, "a", &p5, a), JQ_OK);
  CHECK_INT(pub(q, "e", &pn, e), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j && strcmp(job_id(j), e) == 0);
  if (j) jobq_finish(q, j, JO_REQUEUE, NULL, 0);
  j = jobq_claim(q, soon());
  CHECK(j && strcmp(job_id(j), e) == 0);
  if (j) jobq_finish(q, j, JO_OK, NULL, 0);
  j = jobq_claim(q, soon());
  CHECK(j && strcmp(job_id(j), a) == 0);
  if (j) jobq_finish(q, j, JO_OK, NULL, 0);
  jobq_free(q);
}

TEST(many_jobs_order) {
  /* 300 jobs over 3 priorities: the heap must give priority order, FIFO inside one */
  struct jobq_config c = cfg_of("t:many");
  struct jobq *q = jobq_new(&c, NULL);
  char id[64], data[16];
  for (int i = 0; i < 300; i++) {
    struct jobq_publish_opts o = {.priority = (i * 7) % 3, .max_retries = -1};
    snprintf(data, sizeof data, "%d", i);
    CHECK_INT(pub(q, data, &o, id), JQ_OK);
  }
  int prev_p = -1, prev_i = -1, bad = 0, n = 0;
  struct job *j;
  while ((j = jobq_claim(q, NO_WAIT))) {
    size_t len;
    int i = atoi(job_data(j, &len)), p = (i * 7) % 3;
    if (p < prev_p || (p == prev_p && i < prev_i)) bad++;
    prev_p = p;
    prev_i = i;
    n++;
    jobq_finish(q, j, JO_OK, NULL, 0);
  }
  CHECK_INT(n, 300);
  CHECK_INT(bad, 0);
  jobq_free(q);
}

/* ---- 8. delay ------------------------------------------------------------------- */

TEST(delayed_job) {
  struct jobq_config c = cfg_of("t:delay");
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  struct jobq_publish_opts o = {.delay_ns = 300 * NS_PER_MS, .max_retries = -1};
  int64_t t0 = clock_mono_ns();
  CHECK_INT(pub(q, "{}", &o, id), JQ_OK);
  if (clock_mono_ns() - t0 < 250 * NS_PER_MS) CHECK_STATE(q, id, "scheduled");
  CHECK_J(info(q, id), "type(v.run_at)", "string");
  struct job *j = jobq_claim(q, in_ms(50));
  if (j) {                               /* only possible when this thread stalled > 300 ms */
    CHECK(clock_mono_ns() - t0 >= 250 * NS_PER_MS);
  } else {
    j = jobq_claim(q, soon());           /* wakes by itself when the delay is over */
  }
  CHECK(j != NULL);
  CHECK(clock_mono_ns() - t0 >= 250 * NS_PER_MS);   /* not before its time (ms rounding) */
  if (j) {
    CHECK_STR(job_id(j), id);
    jobq_finish(q, j, JO_OK, NULL, 0);
  }
  CHECK_STATE(q, id, "done");
  jobq_free(q);
}

TEST(delayed_jobs_ordered_by_run_at) {
  struct jobq_config c = cfg_of("t:delay2");
  struct jobq *q = jobq_new(&c, NULL);
  char late[64], early[64], now_id[64];
  struct jobq_publish_opts ol = {.delay_ns = 400 * NS_PER_MS, .priority = -5, .max_retries = -1};
  struct jobq_publish_opts oe = {.delay_ns = 100 * NS_PER_MS, .max_retries = -1};
  CHECK_INT(pub(q, "late", &ol, late), JQ_OK);
  CHECK_INT(pub(q, "early", &oe, early), JQ_OK);
  CHECK_INT(pub(q, "now", NULL, now_id), JQ_OK);
  const char *want[] = {now_id, early, late};
  for (int i = 0; i < 3; i++) {
    struct job *j = jobq_claim(q, soon());
    CHECK(j != NULL);
    if (!j) break;
    /* a stalled machine may make both delays due at once: then priority decides */
    if (strcmp(job_id(j), want[i]) != 0)
      CHECK(i == 1 && strcmp(job_id(j), late) == 0);
    jobq_finish(q, j, JO_OK, NULL, 0);
  }
  jobq_free(q);
}

/* ---- 9. cancel --------------------------------------------------------------------- */

TEST(cancel_queued_unknown_finished) {
  struct jobq_config c = cfg_of("t:cancel");
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64], d[64];
  struct jobq_publish_opts later = {.delay_ns = 60 * NS_PER_S, .max_retries = -1};
  CHECK_INT(pub(q, "a", NULL, a), JQ_OK);
  CHECK_INT(pub(q, "b", &later, b), JQ_OK);
  CHECK_INT(jobq_cancel(q, a), JS_QUEUED);
  CHECK_STATE(q, a, "cancelled");
  CHECK_J(info(q, a), "type(v.finished_at)", "string");
  CHECK_J(info(q, a), "v.errors[1].error", "cancelled before it ran");
  CHECK_INT(jobq_job_result(q, a, &rbuf), JS_CANCELLED);
  CHECK_STR(result(q, a), "\"cancelled before it ran\"");
  CHECK_INT(jobq_cancel(q, b), JS_SCHEDULED);
  CHECK_STATE(q, b, "cancelled");
  CHECK(jobq_claim(q, in_ms(100)) == NULL);                  /* neither is ever claimed */
  CHECK_INT(jobq_cancel(q, "no-such-job"), -1);
  CHECK_INT(jobq_cancel(q, a), JS_CANCELLED);                 /* again: unchanged */
  CHECK_J(info(q, a), "#v.errors", "1");

  CHECK_INT(pub(q, "d", NULL, d), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) jobq_finish(q, j, JO_OK, "7", 1);
  CHECK_INT(jobq_cancel(q, d), JS_DONE);
  CHECK_STATE(q, d, "done");
  CHECK_STR(result(q, d), "7");
  CHECK_J(info(q, d), "#v.errors", "0");

  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.by_state[JS_CANCELLED], 2);
  CHECK_INT(st.by_state[JS_DONE], 1);
  /* cancelled jobs no longer count against the capacity */
  struct jobq_config c2 = cfg_of("t:cancel2");
  c2.capacity = 1;
  struct jobq *q2 = jobq_new(&c2, NULL);
  CHECK_INT(pub(q2, "x", NULL, a), JQ_OK);
  CHECK_INT(jobq_cancel(q2, a), JS_QUEUED);
  CHECK_INT(pub(q2, "y", NULL, b), JQ_OK);
  jobq_free(q2);
  jobq_free(q);
}

TEST(cancel_retrying) {
  struct jobq_config c = cfg_of("t:cancelr");
  c.max_retries = 3;
  c.backoff_base_ns = 60 * NS_PER_S;
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  CHECK_INT(pub(q, "a", NULL, id), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) jobq_finish(q, j, JO_ERROR, "e1", 2);
  CHECK_STATE(q, id, "retrying");
  CHECK_INT(jobq_cancel(q, id), JS_RETRYING);
  CHECK_STATE(q, id, "cancelled");
  CHECK_J(info(q, id), "#v.errors", "2");
  CHECK_STR(result(q, id), "\"cancelled before it ran\"");
  jobq_free(q);
}

/* A wake callback that checks whether the queue's lock is free while it runs: a helper
** thread calls jobq_running (which takes the lock) and the callback waits for it, bounded. */
struct lockprobe {
  struct jobq *q;
  pthread_t th;
  int started;
  _Atomic int done, calls;
  int free_inside;
};

static void *probe_main(void *arg) {
  struct lockprobe *p = arg;
  (void)jobq_running(p->q);
  atomic_store(&p->done, 1);
  return NULL;
}

static void probe_wake(void *arg) {
  struct lockprobe *p = arg;
  atomic_fetch_add(&p->calls, 1);
  if (p->started) return;
  p->started = pthread_create(&p->th, NULL, probe_main, p) == 0;
  int64_t until = clock_mono_ns() + 2 * NS_PER_S;
  while (!atomic_load(&p->done) && clock_mono_ns() < until) sleep_ms(1);
  p->free_inside = atomic_load(&p->done);
}

TEST(cancel_running) {
  struct jobq_config c = cfg_of("t:cancelrun");
  c.max_retries = 3;
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  CHECK_INT(pub(q, "a", NULL, id), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (!j) { jobq_free(q); return; }
  _Atomic int wakes = 0;
  job_on_cancel(q, j, count_wake, &wakes);
  CHECK_INT(jobq_cancel(q, id), JS_RUNNING);
  CHECK_INT(atomic_load(job_cancel_flag(j)), 1);
  CHECK_INT(atomic_load(&wakes), 1);
  CHECK_STATE(q, id, "running");                              /* until the runner stops */
  CHECK_INT(jobq_cancel(q, id), JS_RUNNING);                  /* again: no second wake */
  CHECK_INT(atomic_load(&wakes), 1);
  jobq_finish(q, j, JO_CANCELLED, "cancelled", 9);
  CHECK_STATE(q, id, "cancelled");
  CHECK_INT(jobq_cancel(q, id), JS_CANCELLED);
  CHECK_INT(atomic_load(&wakes), 1);                          /* the wake was cleared */

  /* a cancel before any wake is registered only sets the flag */
  char id2[64];
  CHECK_INT(pub(q, "b", NULL, id2), JQ_OK);
  j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) {
    CHECK_INT(atomic_load(job_cancel_flag(j)), 0);
    CHECK_INT(jobq_cancel(q, id2), JS_RUNNING);
    CHECK_INT(atomic_load(job_cancel_flag(j)), 1);
    jobq_finish(q, j, JO_CANCELLED, "c", 1);
  }
  jobq_free(q);
}

TEST(cancel_wake_without_queue_lock) {
  struct jobq_config c = cfg_of("t:wakelock");
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  CHECK_INT(pub(q, "a", NULL, id), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (!j) { jobq_free(q); return; }
  struct lockprobe p = {.q = q};
  job_on_cancel(q, j, probe_wake, &p);
  CHECK_INT(jobq_cancel(q, id), JS_RUNNING);
  CHECK_INT(atomic_load(&p.calls), 1);
  if (p.started) pthread_join(p.th, NULL);
  CHECK(p.started);
  /* The wake runs with the queue locked (jobq.h): that keeps the runner's wake
  ** argument alive; a wake must not call into the queue. */
  CHECK(!p.free_inside);
  jobq_finish(q, j, JO_CANCELLED, "c", 1);
  jobq_free(q);
}

/* ---- 10. max_concurrent ------------------------------------------------------------ */

struct claimer {
  struct jobq *q;
  int64_t until;
  struct job *got;
};

static void *claim_thread(void *arg) {
  struct claimer *cl = arg;
  cl->got = jobq_claim(cl->q, cl->until);
  return NULL;
}

TEST(max_concurrent_one) {
  struct jobq_config c = cfg_of("t:conc");
  c.max_concurrent = 1;
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64];
  CHECK_INT(pub(q, "a", NULL, a), JQ_OK);
  CHECK_INT(pub(q, "b", NULL, b), JQ_OK);
  struct job *j1 = jobq_claim(q, soon());
  CHECK(j1 != NULL);
  CHECK(jobq_claim(q, in_ms(50)) == NULL);
  CHECK_INT(jobq_running(q), 1);
  CHECK_STATE(q, b, "queued");
  /* a waiter blocked on the limit is woken by the finish */
  struct claimer cl = {q, soon(), NULL};
  pthread_t th;
  CHECK_INT(pthread_create(&th, NULL, claim_thread, &cl), 0);
  sleep_ms(20);
  if (j1) jobq_finish(q, j1, JO_OK, NULL, 0);
  pthread_join(th, NULL);
  CHECK(cl.got != NULL);
  if (cl.got) {
    CHECK_STR(job_id(cl.got), b);
    CHECK_INT(jobq_running(q), 1);
    jobq_finish(q, cl.got, JO_OK, NULL, 0);
  }
  CHECK_INT(jobq_running(q), 0);
  jobq_free(q);
}

TEST(claim_wakes_on_publish) {
  struct jobq_config c = cfg_of("t:wake");
  struct jobq *q = jobq_new(&c, NULL);
  struct claimer cl = {q, soon(), NULL};
  pthread_t th;
  CHECK_INT(pthread_create(&th, NULL, claim_thread, &cl), 0);
  sleep_ms(20);
  char id[64];
  CHECK_INT(pub(q, "x", NULL, id), JQ_OK);
  pthread_join(th, NULL);
  CHECK(cl.got != NULL);
  if (cl.got) {
    CHECK_STR(job_id(cl.got), id);
    jobq_finish(q, cl.got, JO_OK, NULL, 0);
  }
  CHECK(jobq_claim(q, in_ms(20)) == NULL);                   /* empty: times out */
  jobq_free(q);
}

/* ---- 11. drain, stop, interrupt ---------------------------------------------------- */

TEST(drain_rejects_and_stops_claims) {
  struct jobq_config c = cfg_of("t:drain");
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64], err[256] = "";
  int existed = -1;
  CHECK_INT(pub(q, "a", NULL, a), JQ_OK);
  jobq_drain(q);
  CHECK_INT(jobq_publish(q, "b", 1, NULL, b, sizeof b, &existed, err, sizeof err), JQ_DRAINING);
  CHECK_CONTAINS(err, "shutting down");
  CHECK(jobq_claim(q, in_ms(50)) == NULL);                   /* no new job is claimed */
  CHECK_STATE(q, a, "queued");
  struct jobq_publish_opts o = {.id = a, .max_retries = -1};  /* an existing id still answers */
  CHECK_INT(jobq_publish(q, "a", 1, &o, b, sizeof b, &existed, err, sizeof err), JQ_OK);
  CHECK_INT(existed, 1);
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.rejected_draining, 1);
  CHECK_INT(st.published, 1);
  jobq_free(q);
}

TEST(stop_releases_blocked_claim) {
  struct jobq_config c = cfg_of("t:stop");
  struct jobq *q = jobq_new(&c, NULL);
  struct claimer cl[2] = {{q, 0, NULL}, {q, 0, NULL}};       /* 0: no time limit */
  pthread_t th[2];
  for (int i = 0; i < 2; i++) CHECK_INT(pthread_create(&th[i], NULL, claim_thread, &cl[i]), 0);
  sleep_ms(50);
  jobq_stop(q);
  int joined = 1;
  for (int i = 0; i < 2; i++) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    if (pthread_timedjoin_np(th[i], NULL, &ts) != 0) joined = 0;
    else CHECK(cl[i].got == NULL);
  }
  CHECK(joined);
  if (!joined) { printf("  claim did not return after jobq_stop\n"); exit(1); }
  CHECK(jobq_claim(q, 0) == NULL);                            /* and at once from now on */
  char id[64], err[256] = "";
  int existed;
  CHECK_INT(jobq_publish(q, "x", 1, NULL, id, sizeof id, &existed, err, sizeof err), JQ_DRAINING);
  jobq_free(q);
}

TEST(interrupt_running) {
  struct jobq_config c = cfg_of("t:intr");
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64], d[64];
  CHECK_INT(pub(q, "a", NULL, a), JQ_OK);
  CHECK_INT(pub(q, "b", NULL, b), JQ_OK);
  CHECK_INT(pub(q, "d", NULL, d), JQ_OK);
  struct job *ja = jobq_claim(q, soon()), *jb = jobq_claim(q, soon());
  CHECK(ja && jb);
  if (!ja || !jb) { jobq_free(q); return; }
  _Atomic int wakes = 0;
  job_on_cancel(q, ja, count_wake, &wakes);
  CHECK_INT(jobq_running(q), 2);
  CHECK_INT(jobq_interrupt_running(q), 2);
  CHECK_INT(atomic_load(job_cancel_flag(ja)), 2);
  CHECK_INT(atomic_load(job_cancel_flag(jb)), 2);
  CHECK_INT(atomic_load(&wakes), 1);
  CHECK_INT(jobq_interrupt_running(q), 0);                    /* already flagged */
  CHECK_INT(jobq_cancel(q, a), JS_RUNNING);                   /* flag stays 2 */
  CHECK_INT(atomic_load(job_cancel_flag(ja)), 2);
  CHECK_STATE(q, d, "queued");                                /* not running: untouched */
  jobq_finish(q, ja, JO_REQUEUE, NULL, 0);
  jobq_finish(q, jb, JO_REQUEUE, NULL, 0);
  CHECK_INT(jobq_running(q), 0);
  CHECK_STATE(q, a, "queued");
  CHECK_STATE(q, b, "queued");
  CHECK_J(info(q, a), "v.attempt", "0");
  /* a job cancelled by a client (flag 1) is not counted */
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) {
    CHECK_STR(job_id(j), a);                                  /* back in creation order */
    CHECK_INT(job_attempt(j), 1);
    CHECK_INT(atomic_load(job_cancel_flag(j)), 0);            /* reset by the claim */
    CHECK_INT(jobq_cancel(q, job_id(j)), JS_RUNNING);
    CHECK_INT(jobq_interrupt_running(q), 0);
    CHECK_INT(atomic_load(job_cancel_flag(j)), 1);
    jobq_finish(q, j, JO_CANCELLED, "c", 1);
  }
  while ((j = jobq_claim(q, NO_WAIT))) jobq_finish(q, j, JO_OK, NULL, 0);
  CHECK_STATE(q, b, "done");
  CHECK_STATE(q, d, "done");
  jobq_free(q);
}

/* ---- 12. list ------------------------------------------------------------------ */

TEST(list_pages_and_filter) {
  struct jobq_config c = cfg_of("t:list");
  struct jobq *q = jobq_new(&c, NULL);
  char ids[5][64], all[512] = "", got[1024] = "", page[512];
  for (int i = 0; i < 5; i++) {
    char data[8];
    snprintf(data, sizeof data, "%d", i);
    CHECK_INT(pub(q, data, NULL, ids[i]), JQ_OK);
    snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", i ? "," : "", ids[i]);
  }
  struct buf b;
  buf_init(&b);
  int64_t after = 0, next = -1;
  int pages = 0;
  do {
    buf_reset(&b);
    jobq_list(q, -1, after, 2, &b, &next);
    CHECK_J(b.data, "#v", pages < 2 ? "2" : "1");
    list_ids(b.data, page, sizeof page);
    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", pages ? "," : "", page);
    CHECK(next == 0 || next > after);
    after = next;
    pages++;
  } while (next && pages < 10);
  CHECK_INT(pages, 3);
  CHECK_STR(got, all);
  CHECK_INT(next, 0);

  /* exactly one page: next is 0 */
  buf_reset(&b);
  jobq_list(q, -1, 0, 5, &b, &next);
  CHECK_INT(next, 0);
  CHECK_J(b.data, "#v", "5");
  CHECK_J(b.data, "v[1].state", "queued");
  CHECK_J(b.data, "v[1].queue", "t:list");

  /* finish jobs 1 and 3 (0-based): the "done" filter sees only them */
  struct job *j, *claimed[5] = {0};
  for (int i = 0; i < 5; i++) {
    claimed[i] = jobq_claim(q, NO_WAIT);
    CHECK(claimed[i] && strcmp(job_id(claimed[i]), ids[i]) == 0);
  }
  buf_reset(&b);
  jobq_list(q, JS_RUNNING, 0, 100, &b, &next);
  CHECK_J(b.data, "#v", "5");
  for (int i = 0; i < 5; i++) {
    if (!claimed[i]) continue;
    if (i == 1 || i == 3) jobq_finish(q, claimed[i], JO_OK, "true", 4);
    else jobq_finish(q, claimed[i], JO_REQUEUE, NULL, 0);
  }
  buf_reset(&b);
  jobq_list(q, JS_DONE, 0, 100, &b, &next);
  list_ids(b.data, page, sizeof page);
  char want[256];
  snprintf(want, sizeof want, "%s,%s", ids[1], ids[3]);
  CHECK_STR(page, want);
  CHECK_INT(next, 0);
  CHECK_J(b.data, "v[1].result", "true");
  /* filtered and paged, one at a time */
  buf_reset(&b);
  jobq_list(q, JS_DONE, 0, 1, &b, &next);
  list_ids(b.data, page, sizeof page);
  CHECK_STR(page, ids[1]);
  CHECK(next != 0);
  buf_reset(&b);
  jobq_list(q, JS_DONE, next, 1, &b, &next);
  list_ids(b.data, page, sizeof page);
  CHECK_STR(page, ids[3]);
  CHECK_INT(next, 0);
  buf_reset(&b);
  jobq_list(q, JS_QUEUED, 0, 100, &b, &next);
  CHECK_J(b.data, "#v", "3");
  buf_reset(&b);
  jobq_list(q, JS_FAILED, 0, 100, &b, &next);
  CHECK_STR(b.data, "[]");
  CHECK_INT(next, 0);
  /* after the last seq: empty */
  buf_reset(&b);
  jobq_list(q, -1, 1000000, 10, &b, &next);
  CHECK_STR(b.data, "[]");
  CHECK_INT(next, 0);
  buf_free(&b);
  while ((j = jobq_claim(q, NO_WAIT))) jobq_finish(q, j, JO_OK, NULL, 0);
  jobq_free(q);
}

TEST(list_limit_zero) {
  struct jobq_config c = cfg_of("t:list0");
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  CHECK_INT(pub(q, "1", NULL, id), JQ_OK);
  struct buf b;
  buf_init(&b);
  int64_t next = -1;
  (void)next;
    jobq_list(q, -1, 0, 0, &b, &next);
  CHECK_STR(b.data, "[]");
  buf_free(&b);
  jobq_free(q);
}

/* ---- 13. stats ------------------------------------------------------------------ */

TEST(stats_counts) {
  struct jobq_config c = cfg_of("t:stats");
  c.max_retries = 1;
  c.backoff_base_ns = 60 * NS_PER_S;                          /* retrying stays retrying */
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64], d[64], e[64];
  struct jobq_publish_opts later = {.delay_ns = 60 * NS_PER_S, .max_retries = -1};
  CHECK_INT(pub(q, "a", NULL, a), JQ_OK);
  CHECK_INT(pub(q, "b", NULL, b), JQ_OK);
  CHECK_INT(pub(q, "d", NULL, d), JQ_OK);
  CHECK_INT(pub(q, "e", &later, e), JQ_OK);
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.by_state[JS_QUEUED], 3);
  CHECK_INT(st.by_state[JS_SCHEDULED], 1);
  CHECK_INT(st.published, 4);
  CHECK_INT(st.wait_count, 0);

  struct job *ja = jobq_claim(q, soon());
  CHECK(ja && strcmp(job_id(ja), a) == 0);
  if (ja) jobq_finish(q, ja, JO_OK, NULL, 0);
  struct job *jb = jobq_claim(q, soon());
  CHECK(jb && strcmp(job_id(jb), b) == 0);
  if (jb) jobq_finish(q, jb, JO_ERROR, "err", 3);
  struct job *jd = jobq_claim(q, soon());
  CHECK(jd && strcmp(job_id(jd), d) == 0);

  jobq_stats(q, &st);
  CHECK_INT(st.by_state[JS_QUEUED], 0);
  CHECK_INT(st.by_state[JS_SCHEDULED], 1);
  CHECK_INT(st.by_state[JS_RUNNING], 1);
  CHECK_INT(st.by_state[JS_RETRYING], 1);
  CHECK_INT(st.by_state[JS_DONE], 1);
  CHECK_INT(st.by_state[JS_FAILED], 0);
  CHECK_INT(st.published, 4);
  CHECK_INT(st.finished, 1);
  CHECK_INT(st.retries, 1);
  CHECK_INT(st.wait_count, 3);
  CHECK_INT(st.run_count, 2);
  uint64_t hist = 0;
  for (int i = 0; i < 16; i++) hist += st.wait_hist[i];
  CHECK_INT(hist, 3);

  if (jd) jobq_finish(q, jd, JO_FATAL, "fatal", 5);
  CHECK_INT(jobq_cancel(q, e), JS_SCHEDULED);
  CHECK_INT(jobq_cancel(q, b), JS_RETRYING);
  jobq_stats(q, &st);
  CHECK_INT(st.by_state[JS_FAILED], 1);
  CHECK_INT(st.by_state[JS_CANCELLED], 2);
  CHECK_INT(st.by_state[JS_SCHEDULED], 0);
  CHECK_INT(st.by_state[JS_RETRYING], 0);
  CHECK_INT(st.by_state[JS_RUNNING], 0);
  CHECK_INT(st.run_count, 3);
  CHECK(st.finished >= 2);
  /* Note: jobs cancelled before they ran are not counted in `finished` (jobq_cancel does
  ** not increment it), so taskhost_jobs_finished_total excludes them; by_state does not. */
  jobq_free(q);
}

/* ---- retention ---------------------------------------------------------------- */

static struct jobstore *must_open(const char *path);
static long long sql_int(const char *path, const char *sql, const char *bind);

/* Pruning runs when a job finishes (and may be rate-limited): finishes filler jobs until id
** is gone, for at most 5 s. Returns 1 when it went. */
static int finish_until_gone(struct jobq *q, struct jobstore *s, const char *id) {
  int64_t until = clock_mono_ns() + 5 * NS_PER_S;
  char fid[64];
  do {
    if (pub(q, "\"filler\"", NULL, fid) != JQ_OK) return 0;
    struct job *j = jobq_claim(q, soon());
    if (!j) return 0;
    jobq_finish(q, j, JO_OK, NULL, 0);
    if (s) jobstore_flush(s);
    if (state_of(q, id) < 0) return 1;
    sleep_ms(50);
  } while (clock_mono_ns() < until);
  return 0;
}

TEST(retention_prunes_finished) {
  struct jobq_config c = cfg_of("t:ret");
  c.retention_ns = NS_PER_MS;
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64];
  CHECK_INT(pub(q, "a", NULL, a), JQ_OK);
  CHECK_INT(pub(q, "b", NULL, b), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j && strcmp(job_id(j), a) == 0);
  if (j) jobq_finish(q, j, JO_OK, NULL, 0);
  CHECK_STATE(q, a, "done");
  struct job *jb = jobq_claim(q, soon());                     /* b keeps running */
  CHECK(jb != NULL);
  CHECK(finish_until_gone(q, NULL, a));
  CHECK_INT(state_of(q, a), -1);
  CHECK_INT(jobq_cancel(q, a), -1);
  CHECK_STATE(q, b, "running");                               /* unfinished jobs stay */
  struct buf lb;
  buf_init(&lb);
  int64_t next;
  jobq_list(q, -1, 0, 1000, &lb, &next);
  CHECK(strstr(lb.data, a) == NULL);
  CHECK(strstr(lb.data, b) != NULL);
  buf_free(&lb);
  if (jb) jobq_finish(q, jb, JO_OK, NULL, 0);
  jobq_free(q);
}

TEST(store_retention_deletes_rows) {
  char path[256];
  snprintf(path, sizeof path, "%s", tpath("retention.db"));
  struct jobstore *s = must_open(path);
  CHECK(s != NULL);
  if (!s) return;
  struct jobq_config c = cfg_of("t:sret");
  c.retention_ns = NS_PER_MS;
  struct jobq *q = jobq_new(&c, s);
  char a[64];
  CHECK_INT(pub(q, "a", NULL, a), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  if (j) jobq_finish(q, j, JO_OK, NULL, 0);
  jobstore_flush(s);
  CHECK_INT(sql_int(path, "SELECT count(*) FROM jobs WHERE id = ?1", a), 1);
  CHECK(finish_until_gone(q, s, a));
  jobstore_flush(s);
  CHECK_INT(sql_int(path, "SELECT count(*) FROM jobs WHERE id = ?1", a), 0);
  CHECK(sql_int(path, "SELECT count(*) FROM jobs", NULL) >= 1);  /* the last filler */
  jobstore_close(s);
  jobq_free(q);
}

TEST(restore_drops_expired) {
  struct jobq_config c = cfg_of("t:restret");
  c.retention_ns = 60 * NS_PER_S;
  struct jobq *q = jobq_new(&c, NULL);
  int64_t now = clock_wall_ns() / NS_PER_MS;
  struct job_row old = {.seq = 1, .id = "old", .queue = "t:restret", .state = JS_DONE,
                        .attempt = 1, .created_at = now - 7200000, .started_at = now - 7200000,
                        .finished_at = now - 3600000, .data = "1", .result = "2"};
  struct job_row fresh = {.seq = 2, .id = "fresh", .queue = "t:restret", .state = JS_DONE,
                          .attempt = 1, .created_at = now - 2000, .started_at = now - 2000,
                          .finished_at = now - 1000, .data = "1", .result = "3"};
  jobq_restore(q, &old);
  jobq_restore(q, &fresh);
  CHECK_STATE(q, "fresh", "done");
  CHECK_STR(result(q, "fresh"), "3");
    CHECK_INT(state_of(q, "old"), -1);
  CHECK(finish_until_gone(q, NULL, "old"));                   /* gone after a finish */
  CHECK_STATE(q, "fresh", "done");
  jobq_free(q);
}

/* ---- 16. JSON escaping ---------------------------------------------------------- */

TEST(json_escaping) {
  struct jobq_config c = cfg_of("t:\"esc\\");
  c.max_retries = 1;
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  struct jobq_publish_opts o = {.id = "id \"q\" \\ x", .max_retries = -1};
  CHECK_INT(pub(q, "{}", &o, id), JQ_OK);
  CHECK_STR(id, "id \"q\" \\ x");
  static const char m1[] = "first {\"attempt\":9,\"error\":\"fake\"} \\";
  static const char m2[] = "said \"hi\"\\path\\\nline2\ttab\x01 \xc3\xa9 end\\";
  struct job *j = jobq_claim(q, soon());
  if (j) jobq_finish(q, j, JO_ERROR, m1, sizeof m1 - 1);
  j = jobq_claim(q, soon());
  if (j) jobq_finish(q, j, JO_ERROR, m2, sizeof m2 - 1);
  CHECK_STATE(q, id, "failed");
  const char *s = info(q, id);
  CHECK_J(s, "v.id", "id \"q\" \\ x");
  CHECK_J(s, "v.queue", "t:\"esc\\");
  CHECK_J(s, "#v.errors", "2");
  CHECK_J(s, "v.errors[1].error", m1);
  CHECK_J(s, "v.errors[2].error", m2);
  CHECK_J(s, "v.errors[2].attempt", "2");
  CHECK_CONTAINS(s, "\\\"hi\\\"\\\\path\\\\\\nline2\\ttab\\u0001");
  const char *r = result(q, id);
  CHECK_J(r, "v", m2);
  CHECK_STR(r, "\"said \\\"hi\\\"\\\\path\\\\\\nline2\\ttab\\u0001 \xc3\xa9 end\\\\\"");

  /* a list of it decodes too */
  struct buf lb;
  buf_init(&lb);
  int64_t next;
  jobq_list(q, -1, 0, 10, &lb, &next);
  CHECK_J(lb.data, "v[1].errors[2].error", m2);
  CHECK_J(lb.data, "v[1].id", "id \"q\" \\ x");
  buf_free(&lb);

  /* an empty message and a NULL message */
  char a[64], b[64];
  CHECK_INT(pub(q, "{}", NULL, a), JQ_OK);
  CHECK_INT(pub(q, "{}", NULL, b), JQ_OK);
  j = jobq_claim(q, soon());
  if (j) jobq_finish(q, j, JO_FATAL, "", 0);
  j = jobq_claim(q, soon());
  if (j) jobq_finish(q, j, JO_FATAL, NULL, 0);
  CHECK_STR(result(q, a), "\"\"");
  CHECK_STR(result(q, b), "\"\"");
  CHECK_J(info(q, b), "v.errors[1].error", "");
  jobq_free(q);
}

/* ---- 14/15. SQLite store ---------------------------------------------------------- */

struct restore_ctx { struct jobq *q; size_t n; };

static void restore_row(void *arg, const struct job_row *r) {   /* as host/jobs/jobs.c does */
  struct restore_ctx *rc = arg;
  if (strcmp(r->queue, jobq_name(rc->q)) != 0) return;
  jobq_restore(rc->q, r);
  rc->n++;
}

static struct jobstore *must_open(const char *path) {
  char err[512] = "";
  struct jobstore *s = jobstore_open(path, 0, err, sizeof err);
  if (!s) printf("  open %s: %s\n", path, err);
  return s;
}

/* Copies file from to to (a missing from leaves to missing). */
static void copy_file(const char *from, const char *to) {
  remove(to);
  FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
  char buf[65536];
  size_t n;
  while (out && (n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
  if (out) fclose(out);
  if (in) fclose(in);
}

/* Runs a query returning one integer on a separate connection; -1 on error. The store holds
** its file in exclusive locking mode, so this reads a copy of what is on disk (the database
** and its -wal, which the new connection replays). */
static long long sql_int(const char *path, const char *sql, const char *bind) {
  sqlite3 *db;
  long long v = -1;
  char copy[300], from[300], to[320];
  snprintf(copy, sizeof copy, "%s.peek", path);
  snprintf(from, sizeof from, "%s-wal", path);
  snprintf(to, sizeof to, "%s-wal", copy);
  copy_file(path, copy);
  copy_file(from, to);
  path = copy;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
    printf("  sqlite3_open %s: %s\n", path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return -1;
  }
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    if (bind) sqlite3_bind_text(st, 1, bind, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  } else {
    printf("  sql %s: %s\n", sql, sqlite3_errmsg(db));
  }
  sqlite3_close(db);
  remove(copy);
  remove(to);
  return v;
}

/* Publishes A, B, C; A runs and is done, B is left running; the host "crashes" (store closed
** and queue freed without finishing B). Then reopens with max_recoveries and checks. */
static void crash_and_recover(const char *file, int max_recoveries) {
  const char *p = tpath(file);
  char path[256];
  snprintf(path, sizeof path, "%s", p);
  struct jobq_config c = cfg_of("t:store");
  c.max_retries = 2;
  c.backoff_base_ns = NS_PER_MS;
  struct jobstore *s = must_open(path);
  CHECK(s != NULL);
  if (!s) return;
  struct jobq *q = jobq_new(&c, s);
  char a[64], b[64], d[64];
  struct jobq_publish_opts ka = {.idem_key = "k-a", .priority = 0, .max_retries = -1};
  CHECK_INT(pub(q, "{\"job\":\"a\"}", NULL, a), JQ_OK);
  CHECK_INT(pub(q, "{\"job\":\"b\"}", &ka, b), JQ_OK);
  CHECK_INT(pub(q, "{\"job\":\"c\"}", NULL, d), JQ_OK);
  struct job *ja = jobq_claim(q, soon());
  CHECK(ja && strcmp(job_id(ja), a) == 0);
  if (ja) jobq_finish(q, ja, JO_OK, "{\"r\":1}", 7);
  struct job *jb = jobq_claim(q, soon());
  CHECK(jb && strcmp(job_id(jb), b) == 0);
  if (jb) job_set_progress(q, jb, "{\"p\":1}", 7);
  jobstore_close(s);                     /* "crash": b's row stays running */
  jobq_free(q);                          /* b is never finished */
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", b), JS_RUNNING);
  CHECK_INT(sql_int(path, "SELECT attempt FROM jobs WHERE id = ?1", b), 1);
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", a), JS_DONE);

  /* reboot */
  c.max_recoveries = max_recoveries;
  s = must_open(path);
  CHECK(s != NULL);
  if (!s) return;
  q = jobq_new(&c, s);
  struct restore_ctx rc = {q, 0};
  char err[512] = "";
  CHECK_INT(jobstore_load(s, restore_row, &rc, err, sizeof err), 0);
  CHECK_INT(rc.n, 3);

  CHECK_STATE(q, a, "done");
  CHECK_STR(result(q, a), "{\"r\":1}");
  CHECK_J(info(q, a), "v.result.r", "1");
  CHECK_J(info(q, a), "v.attempt", "1");

  const char *sb = info(q, b);
  CHECK_J(sb, "v.attempt", "1");
  CHECK_J(sb, "#v.errors", "1");
  CHECK_J(sb, "v.errors[1].attempt", "1");
  CHECK_J(sb, "v.errors[1].error:sub(1, 12)", "worker lost:");
  /* (progress is not written by job_set_progress itself, so it is not checked here) */
  int64_t until = soon();
  struct job *j1 = NULL, *j2 = NULL;
  if (max_recoveries > 0) {
    CHECK(waiting_again(q, b));
    j1 = jobq_claim(q, until);
    j2 = jobq_claim(q, until);
    CHECK(j1 && j2);
    if (j1 && j2) {
      struct job *jb2 = strcmp(job_id(j1), b) == 0 ? j1 : j2, *jd = jb2 == j1 ? j2 : j1;
      CHECK_STR(job_id(jb2), b);
      CHECK_STR(job_id(jd), d);
      CHECK_INT(job_attempt(jb2), 2);            /* the crash counted as attempt 1 */
      CHECK_INT(job_attempt(jd), 1);
      size_t len;
      CHECK_STR(job_data(jb2, &len), "{\"job\":\"b\"}");
      /* the idempotency key survived */
      char dup[64];
      int existed = -1;
      CHECK_INT(jobq_publish(q, "{}", 2, &ka, dup, sizeof dup, &existed, err, sizeof err), JQ_OK);
      CHECK_INT(existed, 1);
      CHECK_STR(dup, b);
      jobq_finish(q, jb2, JO_OK, "\"b ok\"", 6);
      jobq_finish(q, jd, JO_OK, "\"c ok\"", 6);
      jobstore_flush(s);                         /* visible once committed */
      CHECK_STATE(q, b, "done");
      CHECK_STATE(q, d, "done");
      CHECK_STR(result(q, b), "\"b ok\"");
    }
  } else {
    CHECK_STATE(q, b, "failed");
    CHECK_J(sb, "type(v.finished_at)", "string");
    CHECK_J(result(q, b), "v:sub(1, 12)", "worker lost:");
    j1 = jobq_claim(q, until);
    CHECK(j1 && strcmp(job_id(j1), d) == 0);
    if (j1) {
      CHECK_INT(job_attempt(j1), 1);
      jobq_finish(q, j1, JO_OK, NULL, 0);
    }
    CHECK(jobq_claim(q, in_ms(50)) == NULL);    /* b is not retried */
  }
  /* a new job gets a seq after the restored ones (no primary-key clash) */
  char e[64];
  CHECK_INT(pub(q, "{\"job\":\"e\"}", NULL, e), JQ_OK);
  CHECK_INT(sql_int(path, "SELECT seq FROM jobs WHERE id = ?1", e), 4);
  jobstore_close(s);
  jobq_free(q);
  /* the recovery itself was written */
  CHECK_INT(sql_int(path, "SELECT recoveries FROM jobs WHERE id = ?1", b), 1);
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", b),
            max_recoveries > 0 ? JS_DONE : JS_FAILED);
  CHECK_INT(sql_int(path, "SELECT count(*) FROM jobs", NULL), 4);
  remove(path);
  char aux[300];
  snprintf(aux, sizeof aux, "%s-wal", path);
  remove(aux);
  snprintf(aux, sizeof aux, "%s-shm", path);
  remove(aux);
}

TEST(store_crash_recovery_retry) { crash_and_recover("recover.db", 3); }
TEST(store_crash_recovery_fail) { crash_and_recover("recover0.db", 0); }

TEST(caller_ids_and_keys_are_limited) {
  struct jobq_config c = cfg_of("t:ids");
  struct jobq *q = jobq_new(&c, NULL);
  char big[300], out[JOBQ_KEY_MAX + 1], err[256] = "";
  int existed;
  memset(big, 'a', sizeof big);
  big[JOBQ_KEY_MAX] = '\0';
  struct jobq_publish_opts o = {.id = big, .max_retries = -1};
  CHECK_INT(jobq_publish(q, "1", 1, &o, out, sizeof out, &existed, err, sizeof err), JQ_OK);
  CHECK_STR(out, big);
  big[JOBQ_KEY_MAX] = 'a';
  big[JOBQ_KEY_MAX + 1] = '\0';
  CHECK_INT(jobq_publish(q, "1", 1, &o, out, sizeof out, &existed, err, sizeof err), JQ_INVALID);
  CHECK_CONTAINS(err, "id must be 1 to 255 bytes long (got 256)");
  o.id = "";
  CHECK_INT(jobq_publish(q, "1", 1, &o, out, sizeof out, &existed, err, sizeof err), JQ_INVALID);
  o = (struct jobq_publish_opts){.idem_key = big, .max_retries = -1};
  CHECK_INT(jobq_publish(q, "1", 1, &o, out, sizeof out, &existed, err, sizeof err), JQ_INVALID);
  CHECK_CONTAINS(err, "idempotency key must be 1 to 255 bytes");
  jobq_free(q);
}

/* The database directory removed under a queue: the publish whose commit went to the
** unlinked file is refused, later ones too, nothing is claimed; once the store recovered
** every job is on the new file and claims resume. */
TEST(store_outage_refuses_pauses_and_rewrites) {
  char path[256], aux[300];
  snprintf(path, sizeof path, "%s", tpath("outage/q.db"));
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  struct jobq_config c = cfg_of("t:outage");
  struct jobq *q = jobq_new(&c, s);
  struct jobq_publish_opts o = {.max_retries = -1};
  char id[64];
  o.id = "a";
  CHECK_INT(pub(q, "{}", &o, id), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) jobq_finish(q, j, JO_OK, "1", 1);
  o.id = "b";
  CHECK_INT(pub(q, "{}", &o, id), JQ_OK);
  jobstore_flush(s);
  remove(path);
  snprintf(aux, sizeof aux, "%s-wal", path);
  remove(aux);
  snprintf(aux, sizeof aux, "%s.lock", path);
  remove(aux);
  rmdir(tpath("outage"));
  o.id = "c";
  CHECK_INT(pub(q, "{}", &o, id), JQ_UNAVAILABLE);
  CHECK_INT(jobq_available(q), 0);
  CHECK_INT(jobq_job_info(q, "c", &(struct buf){0}), -1);
  o.id = "d";
  CHECK_INT(pub(q, "{}", &o, id), JQ_UNAVAILABLE);
  CHECK(jobq_claim(q, in_ms(100)) == NULL);      /* b is ready, but not claimed meanwhile */
  j = jobq_claim(q, clock_mono_ns() + 20 * NS_PER_S);    /* a hang detector */
  CHECK(j && strcmp(job_id(j), "b") == 0);
  CHECK_INT(jobq_available(q), 1);
  if (j) jobq_finish(q, j, JO_OK, "2", 1);
  o.id = "e";
  CHECK_INT(pub(q, "{}", &o, id), JQ_OK);
  jobstore_close(s);
  jobq_free(q);
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", "a"), JS_DONE);
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", "b"), JS_DONE);
  CHECK_INT(sql_int(path, "SELECT count(*) FROM jobs WHERE id IN ('c', 'd')", NULL), 0);
  CHECK_INT(sql_int(path, "SELECT count(*) FROM jobs", NULL), 3);
}

TEST(store_publish_is_durable) {
  char path[256];
  snprintf(path, sizeof path, "%s", tpath("durable.db"));
  struct jobstore *s = must_open(path);
  CHECK(s != NULL);
  if (!s) return;
  struct jobq_config c = cfg_of("t:dur");
  struct jobq *q = jobq_new(&c, s);
  for (int i = 0; i < 5; i++) {
    char id[64];
    CHECK_INT(pub(q, "{\"x\":1}", NULL, id), JQ_OK);
    /* straight away, through another connection */
    CHECK_INT(sql_int(path, "SELECT count(*) FROM jobs WHERE id = ?1", id), 1);
    CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", id), JS_QUEUED);
    CHECK_STATE(q, id, "queued");
    struct job *j = jobq_claim(q, soon());
    CHECK(j != NULL);
    if (!j) break;
    /* the claim commits before the job runs; it is shown running once its begin commits */
    CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", id), JS_RUNNING);
    CHECK_INT(sql_int(path, "SELECT attempt FROM jobs WHERE id = ?1", id), 1);
    jobstore_flush(s);
    CHECK_STATE(q, id, "running");
    jobq_finish(q, j, JO_OK, "[1]", 3);
    jobstore_flush(s);
    CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", id), JS_DONE);
    CHECK_STATE(q, id, "done");
  }
  /* cancel of a queued job also waits for its commit */
  struct jobq_publish_opts later = {.delay_ns = 60 * NS_PER_S, .max_retries = -1};
  char id[64];
  CHECK_INT(pub(q, "{}", &later, id), JQ_OK);
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", id), JS_SCHEDULED);
  CHECK_INT(jobq_cancel(q, id), JS_SCHEDULED);
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", id), JS_CANCELLED);
  CHECK_STATE(q, id, "cancelled");
  jobstore_close(s);
  jobq_free(q);
}

/* ---- concurrency ------------------------------------------------------------------ */

struct stress {
  struct jobq *q;
  int total, per_producer;
  _Atomic int processed, in_flight, max_in_flight, errors_injected, producer_fail;
};

struct producer_arg { struct stress *s; int base; };

static void *producer_main(void *arg) {
  struct producer_arg *pa = arg;
  char data[32], id[64], err[256];
  for (int i = 0; i < pa->s->per_producer; i++) {
    int existed;
    snprintf(data, sizeof data, "%d", pa->base + i);
    if (jobq_publish(pa->s->q, data, strlen(data), NULL, id, sizeof id, &existed, err,
                     sizeof err) != JQ_OK || existed)
      atomic_fetch_add(&pa->s->producer_fail, 1);
  }
  return NULL;
}

static void *consumer_main(void *arg) {
  struct stress *s = arg;
  for (;;) {
    struct job *j = jobq_claim(s->q, clock_mono_ns() + 20 * NS_PER_S);
    if (!j) break;
    int now = atomic_fetch_add(&s->in_flight, 1) + 1, m;
    while (now > (m = atomic_load(&s->max_in_flight)) &&
           !atomic_compare_exchange_weak(&s->max_in_flight, &m, now)) {}
    size_t len;
    int n = atoi(job_data(j, &len));
    atomic_fetch_sub(&s->in_flight, 1);
    if (n % 5 == 0 && job_attempt(j) == 1) {
      atomic_fetch_add(&s->errors_injected, 1);
      jobq_finish(s->q, j, JO_ERROR, "again", 5);
    } else {
      jobq_finish(s->q, j, JO_OK, NULL, 0);
      atomic_fetch_add(&s->processed, 1);
    }
  }
  return NULL;
}

/* Producers and consumers at once; max_concurrent must hold, every job ends done. */
static void run_stress(struct jobstore *store, int producers, int per_producer, int consumers,
                       int max_concurrent) {
  struct jobq_config c = cfg_of(store ? "t:stress-db" : "t:stress");
  c.max_retries = 1;
  c.backoff_base_ns = NS_PER_MS;
  c.max_concurrent = max_concurrent;
  c.capacity = (size_t)(producers * per_producer);
  struct stress s = {.total = producers * per_producer, .per_producer = per_producer};
  s.q = jobq_new(&c, store);
  pthread_t pt[8], ct[8];
  struct producer_arg pa[8];
  for (int i = 0; i < consumers; i++) pthread_create(&ct[i], NULL, consumer_main, &s);
  for (int i = 0; i < producers; i++) {
    pa[i] = (struct producer_arg){&s, i * per_producer};
    pthread_create(&pt[i], NULL, producer_main, &pa[i]);
  }
  for (int i = 0; i < producers; i++) pthread_join(pt[i], NULL);
  int64_t until = clock_mono_ns() + 60 * NS_PER_S;
  while (atomic_load(&s.processed) < s.total && clock_mono_ns() < until) sleep_ms(2);
  jobq_stop(s.q);
  for (int i = 0; i < consumers; i++) pthread_join(ct[i], NULL);
  if (store) jobstore_flush(store);
  CHECK_INT(atomic_load(&s.producer_fail), 0);
  CHECK_INT(atomic_load(&s.processed), s.total);
  CHECK(atomic_load(&s.max_in_flight) <= max_concurrent);
  CHECK(atomic_load(&s.max_in_flight) >= 1);
  struct jobq_stats st;
  jobq_stats(s.q, &st);
  CHECK_INT(st.by_state[JS_DONE], s.total);
  CHECK_INT(st.published, s.total);
  CHECK_INT(st.finished, s.total);
  CHECK_INT(st.retries, atomic_load(&s.errors_injected));
  CHECK_INT(st.retries, s.total / 5);
  CHECK_INT(st.run_count, s.total + s.total / 5);
  CHECK_INT(jobq_running(s.q), 0);
  if (store) jobstore_close(store);
  jobq_free(s.q);
}

TEST(stress_memory) { run_stress(NULL, 4, 1000, 4, 3); }

TEST(stress_store) {
  char path[256];
  snprintf(path, sizeof path, "%s", tpath("stress.db"));
  struct jobstore *s = must_open(path);
  CHECK(s != NULL);
  if (!s) return;
  run_stress(s, 2, 150, 3, 2);
  CHECK_INT(sql_int(path, "SELECT count(*) FROM jobs WHERE state = 4", NULL), 300);
}

/* A cancel racing with the publish of the same (explicit) id: once jobq_cancel answers
** JS_QUEUED the job is cancelled and must never be claimed. jobq_publish makes the job
** visible (memory driver: at once; store: when committed) but puts it in the ready heap
** only after re-taking the lock, so a cancel in that gap is undone by the enqueue. */
struct race { struct jobq *q; char id[64]; _Atomic int go; int rc; };

static void *cancel_spin(void *arg) {
  struct race *r = arg;
  while (!atomic_load(&r->go)) {}
  int64_t until = clock_mono_ns() + 2 * NS_PER_S;
  while ((r->rc = jobq_cancel(r->q, r->id)) == -1 && clock_mono_ns() < until) {}
  return NULL;
}

static int race_round(struct jobq *q, int i, int *cancelled_first) {
  struct race r = {.q = q};
  snprintf(r.id, sizeof r.id, "race-%d", i);
  pthread_t th;
  pthread_create(&th, NULL, cancel_spin, &r);
  struct jobq_publish_opts o = {.id = r.id, .max_retries = -1};
  char id[64], err[256];
  int existed;
  atomic_store(&r.go, 1);
  int rc = jobq_publish(q, "{}", 2, &o, id, sizeof id, &existed, err, sizeof err);
  pthread_join(th, NULL);
  if (rc != JQ_OK || r.rc != JS_QUEUED) return 0;
  (*cancelled_first)++;
  struct job *j = jobq_claim(q, NO_WAIT);
  if (!j) return 0;
  jobq_finish(q, j, JO_OK, NULL, 0);
  return 1;                                      /* a cancelled job was claimed */
}

static void race(struct jobstore *store, int rounds, int *bad, int *cancelled) {
  struct jobq_config c = cfg_of("t:race");
  c.capacity = 0;
  struct jobq *q = jobq_new(&c, store);
  for (int i = 0; i < rounds; i++) *bad += race_round(q, i, cancelled);
  if (store) jobstore_close(store);
  jobq_free(q);
}

TEST(cancel_during_publish) {
  int bad = 0, cancelled = 0, bad_db = 0, cancelled_db = 0;
  race(NULL, 300, &bad, &cancelled);
  struct jobstore *s = must_open(tpath("race.db"));
  if (s) race(s, 100, &bad_db, &cancelled_db);
  printf("  memory: the cancel came first in %d of 300 rounds, a cancelled job was claimed %d "
         "times\n  store: the cancel came first in %d of 100 rounds, a cancelled job was "
         "claimed %d times\n", cancelled, bad, cancelled_db, bad_db);
    CHECK_INT(bad + bad_db, 0);
}

/* ---- reserved claims, max_waiting, uuid ids ------------------------------ */

/* A batch a runner claimed but has not begun is not running: shown queued, not counted,
** no attempt; job_begin makes one running. */
TEST(reserved_batch_stays_queued_until_begin) {
  struct jobq_config c = cfg_of("t:reserve");
  struct jobq *q = jobq_new(&c, NULL);
  char ids[40][64];
  for (int i = 0; i < 40; i++) CHECK_INT(pub(q, "x", NULL, ids[i]), JQ_OK);
  struct job *b[16];
  size_t n = jobq_claim_batch(q, soon(), b, 16);
  CHECK(n > 1);                                   /* a deep queue: a batch */
  CHECK_INT(jobq_running(q), 0);
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.by_state[JS_RUNNING], 0);
  CHECK_INT(st.by_state[JS_QUEUED], 40);
  CHECK_STATE(q, job_id(b[1]), "queued");
  CHECK_CONTAINS(info(q, job_id(b[1])), "\"attempt\":0");
  CHECK_INT(job_begin(q, b[0]), 0);
  CHECK_INT(jobq_running(q), 1);
  CHECK_STATE(q, job_id(b[0]), "running");
  CHECK_INT(job_attempt(b[0]), 1);
  CHECK_STATE(q, job_id(b[1]), "queued");
  for (size_t i = 0; i < n; i++) {
    if (i) CHECK_INT(job_begin(q, b[i]), 0);
    jobq_finish(q, b[i], JO_OK, NULL, 0);
  }
  CHECK_INT(jobq_running(q), 0);
  CHECK_STATE(q, job_id(b[1]), "done");
  jobq_free(q);
}

/* With max_concurrent a runner reserves one job at a time, and reserved jobs hold slots. */
TEST(max_concurrent_counts_reserved_jobs) {
  struct jobq_config c = cfg_of("t:reserve-conc");
  c.max_concurrent = 2;
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  for (int i = 0; i < 40; i++) CHECK_INT(pub(q, "x", NULL, id), JQ_OK);
  struct job *a[16], *b[16], *x[16];
  CHECK_INT(jobq_claim_batch(q, soon(), a, 16), 1);
  CHECK_INT(jobq_claim_batch(q, soon(), b, 16), 1);
  CHECK_INT(jobq_claim_batch(q, in_ms(50), x, 16), 0);   /* two slots, both reserved */
  CHECK_INT(job_begin(q, a[0]), 0);
  CHECK_INT(jobq_running(q), 1);
  jobq_finish(q, a[0], JO_OK, NULL, 0);
  CHECK_INT(jobq_claim_batch(q, soon(), x, 16), 1);
  CHECK_INT(job_begin(q, b[0]), 0);
  CHECK_INT(job_begin(q, x[0]), 0);
  CHECK_INT(jobq_running(q), 2);
  jobq_finish(q, b[0], JO_OK, NULL, 0);
  jobq_finish(q, x[0], JO_OK, NULL, 0);
  jobq_free(q);
}

/* Cancelling a reserved job ends it at once; its runner then only lets it go. */
TEST(cancel_reserved_job) {
  struct jobq_config c = cfg_of("t:reserve-cancel");
  c.capacity = 40;
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  for (int i = 0; i < 40; i++) CHECK_INT(pub(q, "x", NULL, id), JQ_OK);
  struct job *b[16];
  size_t n = jobq_claim_batch(q, soon(), b, 16);
  CHECK(n > 1);
  CHECK_INT(jobq_cancel(q, job_id(b[1])), JS_QUEUED);
  CHECK_STATE(q, job_id(b[1]), "cancelled");
  CHECK_INT(pub(q, "y", NULL, id), JQ_OK);        /* its capacity is free at once */
  CHECK_INT(job_begin(q, b[1]), 1);
  jobq_finish(q, b[1], JO_CANCELLED, "cancelled before it ran", 23);
  CHECK_STATE(q, job_id(b[1]), "cancelled");
  CHECK_CONTAINS(info(q, job_id(b[1])), "\"attempt\":0");
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.finished, 1);                      /* counted once */
  for (size_t i = 0; i < n; i++) {
    if (i == 1) continue;
    CHECK_INT(job_begin(q, b[i]), 0);
    jobq_finish(q, b[i], JO_OK, NULL, 0);
  }
  CHECK_INT(jobq_running(q), 0);
  jobq_free(q);
}

/* Draining: a reserved job does not begin; it goes back to wait with its attempt unused. */
TEST(drain_puts_reserved_jobs_back) {
  struct jobq_config c = cfg_of("t:reserve-drain");
  struct jobq *q = jobq_new(&c, NULL);
  char id[64];
  for (int i = 0; i < 40; i++) CHECK_INT(pub(q, "x", NULL, id), JQ_OK);
  struct job *b[16];
  size_t n = jobq_claim_batch(q, soon(), b, 16);
  CHECK(n > 1);
  jobq_drain(q);
  for (size_t i = 0; i < n; i++) {
    CHECK_INT(job_begin(q, b[i]), 2);
    jobq_finish(q, b[i], JO_REQUEUE, NULL, 0);
  }
  CHECK_STATE(q, job_id(b[0]), "queued");
  CHECK_CONTAINS(info(q, job_id(b[0])), "\"attempt\":0");
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.by_state[JS_QUEUED], 40);
  CHECK_INT(jobq_running(q), 0);
  jobq_free(q);
}

/* With a store, a reserved job's row says running with its next attempt (so a crash counts
** it, as for any claim) while it is shown as queued; once begun it is running. */
TEST(store_reserved_row) {
  char path[256];
  snprintf(path, sizeof path, "%s", tpath("reserve.db"));
  struct jobstore *s = must_open(path);
  CHECK(s != NULL);
  if (!s) return;
  struct jobq_config c = cfg_of("t:reserve-store");
  struct jobq *q = jobq_new(&c, s);
  char id[64];
  for (int i = 0; i < 16; i++) CHECK_INT(pub(q, "x", NULL, id), JQ_OK);
  struct job *b[16];
  size_t n = jobq_claim_batch(q, soon(), b, 16);
  CHECK(n > 1);
  const char *second = job_id(b[1]);
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", second), JS_RUNNING);
  CHECK_INT(sql_int(path, "SELECT attempt FROM jobs WHERE id = ?1", second), 1);
  CHECK_STATE(q, second, "queued");
  for (size_t i = 0; i < n; i++) {
    CHECK_INT(job_begin(q, b[i]), 0);
    jobstore_flush(s);                            /* shown running once its begin commits */
    CHECK_STATE(q, job_id(b[i]), "running");
    jobq_finish(q, b[i], JO_OK, NULL, 0);
  }
  jobstore_flush(s);
  CHECK_INT(sql_int(path, "SELECT attempt FROM jobs WHERE id = ?1", second), 1);
  CHECK_STATE(q, second, "done");
  jobstore_close(s);
  jobq_free(q);
}

TEST(max_waiting_counts_waiting_jobs_only) {
  struct jobq_config c = cfg_of("t:waiting");
  c.capacity = 100;
  c.max_waiting = 2;
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64], x[64];
  CHECK_INT(pub(q, "a", NULL, a), JQ_OK);
  CHECK_INT(pub(q, "b", NULL, b), JQ_OK);
  int existed;
  char err[256] = "";
  CHECK_INT(jobq_publish(q, "c", 1, NULL, x, sizeof x, &existed, err, sizeof err), JQ_FULL);
  CHECK_CONTAINS(err, "full");
  struct job *j;
  CHECK_INT(jobq_claim_batch(q, soon(), &j, 1), 1);
  CHECK_INT(jobq_publish(q, "c", 1, NULL, x, sizeof x, &existed, err, sizeof err), JQ_FULL);  /* reserved: still waiting */
  CHECK_INT(job_begin(q, j), 0);
  CHECK_INT(pub(q, "c", NULL, x), JQ_OK);         /* running does not count */
  CHECK_INT(jobq_publish(q, "d", 1, NULL, x, sizeof x, &existed, err, sizeof err), JQ_FULL);
  const char *data[2] = {"e", "f"};
  size_t lens[2] = {1, 1};
  char ids[2][JOBQ_ID_MAX];
  jobq_finish(q, j, JO_OK, NULL, 0);
  CHECK_INT(jobq_publish_many(q, data, lens, 2, NULL, ids, err, sizeof err), JQ_FULL);
  jobq_free(q);
}

TEST(capacity_bytes_counts_data_of_unfinished_jobs) {
  struct jobq_config c = cfg_of("t:bytes");
  c.capacity = 100;
  c.capacity_bytes = 10;
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], x[64], err[256] = "";
  int existed;
  CHECK_INT(jobq_publish(q, "\"1234\"", 6, NULL, a, sizeof a, &existed, err, sizeof err), JQ_OK);
  CHECK_INT(jobq_publish(q, "\"12345\"", 7, NULL, x, sizeof x, &existed, err, sizeof err), JQ_FULL);
  CHECK_CONTAINS(err, "6 bytes");
  CHECK_INT(jobq_publish(q, "\"12\"", 4, NULL, x, sizeof x, &existed, err, sizeof err), JQ_OK);  /* 10: fits */
  const char *data[1] = {"1"};
  size_t lens[1] = {1};
  char ids[1][JOBQ_ID_MAX];
  CHECK_INT(jobq_publish_many(q, data, lens, 1, NULL, ids, err, sizeof err), JQ_FULL);
  struct jobq_stats st;
  jobq_stats(q, &st);
  CHECK_INT(st.live_bytes, 10);
  struct job *j;
  CHECK_INT(jobq_claim_batch(q, soon(), &j, 1), 1);
  CHECK_INT(job_begin(q, j), 0);
  jobq_finish(q, j, JO_OK, NULL, 0);              /* finished: its bytes are free again */
  CHECK_INT(jobq_cancel(q, x), JS_QUEUED);         /* so are a cancelled job's */
  jobq_stats(q, &st);
  CHECK_INT(st.live_bytes, 0);
  CHECK_INT(jobq_publish_many(q, data, lens, 1, NULL, ids, err, sizeof err), JQ_OK);
  jobq_free(q);
}

TEST(forget_finished_jobs_only) {
  struct jobq_config c = cfg_of("t:forget");
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64];
  CHECK_INT(pub(q, "1", NULL, a), JQ_OK);
  CHECK_INT(pub(q, "2", NULL, b), JQ_OK);
  CHECK_INT(jobq_forget(q, a), 1);                  /* queued: not finished */
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  CHECK_INT(jobq_forget(q, a), 1);                  /* running */
  jobq_finish(q, j, JO_OK, "7", 1);
  CHECK_INT(jobq_forget(q, a), 0);
  CHECK_INT(jobq_forget(q, a), -1);                 /* gone */
  struct buf out;
  buf_init(&out);
  CHECK_INT(jobq_job_info(q, a, &out), -1);
  CHECK_INT(jobq_job_info(q, b, &out), 0);          /* the other one is untouched */
  buf_free(&out);
  CHECK_INT(jobq_forget(q, "nope"), -1);
  jobq_free(q);
}

TEST(uuid_ids) {
  struct jobq_config c = cfg_of("t:uuid");
  c.uuid_ids = 1;
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64];
  CHECK_INT(pub(q, "a", NULL, a), JQ_OK);
  CHECK_INT(pub(q, "b", NULL, b), JQ_OK);
  CHECK_INT(strlen(a), 36);
  CHECK(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
  CHECK(a[14] == '4');
  CHECK(strchr("89ab", a[19]) != NULL);
  CHECK(strcmp(a, b) != 0);
  size_t hex = strspn(a, "0123456789abcdef-");
  CHECK_INT(hex, 36);
  jobq_free(q);
}

/* ---- retry and requeue (the operator's buttons) ------------------------------------ */

TEST(retry_failed_and_cancelled_jobs) {
  struct jobq_config c = cfg_of("t:retry");
  c.max_retries = 1;
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64], d[64];
  CHECK_INT(pub(q, "a", NULL, a), JQ_OK);
  for (int i = 0; i < 2; i++) {                      /* two attempts, both fail */
    struct job *j = jobq_claim(q, soon());
    CHECK(j != NULL);
    if (!j) break;
    jobq_finish(q, j, JO_ERROR, "boom", 4);
  }
  CHECK_STATE(q, a, "failed");
  CHECK_INT(jobq_requeue(q, a), JQ_CONFLICT);        /* requeue takes waiting jobs only */
  CHECK_INT(jobq_retry(q, a), JS_FAILED);
  CHECK_STATE(q, a, "queued");
  CHECK_J(info(q, a), "v.attempt", "0");
  CHECK_J(info(q, a), "#v.errors", "2");             /* its history is kept */
  CHECK_J(info(q, a), "tostring(v.finished_at)", "nil");
  CHECK_INT(jobq_retry(q, a), JQ_CONFLICT);          /* queued: nothing to retry */
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) {
    CHECK_STR(job_id(j), a);
    CHECK_INT(job_attempt(j), 1);                    /* attempts counted afresh */
    jobq_finish(q, j, JO_OK, "\"ok\"", 4);
  }
  CHECK_STATE(q, a, "done");
  CHECK_STR(result(q, a), "\"ok\"");
  CHECK_INT(jobq_retry(q, a), JQ_CONFLICT);          /* done jobs are not retried */

  CHECK_INT(pub(q, "b", NULL, b), JQ_OK);
  CHECK_INT(jobq_cancel(q, b), JS_QUEUED);
  CHECK_INT(jobq_retry(q, b), JS_CANCELLED);
  CHECK_STATE(q, b, "queued");
  CHECK_INT(jobq_retry(q, "no-such-job"), -1);
  CHECK_INT(jobq_requeue(q, "no-such-job"), -1);

  /* a failed job whose idempotency key a live job now holds stays failed */
  struct jobq_publish_opts keyed = {.idem_key = "k1", .max_retries = 0};
  CHECK_INT(pub(q, "d", &keyed, d), JQ_OK);
  jobq_cancel(q, d);
  char e[64];
  CHECK_INT(pub(q, "e", &keyed, e), JQ_OK);
  CHECK(strcmp(d, e) != 0);
  CHECK_INT(jobq_retry(q, d), JQ_CONFLICT);
  jobq_free(q);

  /* a retried job counts against the capacity again */
  struct jobq_config c1 = cfg_of("t:retry-cap");
  c1.capacity = 1;
  q = jobq_new(&c1, NULL);
  CHECK_INT(pub(q, "x", NULL, a), JQ_OK);
  jobq_cancel(q, a);
  CHECK_INT(pub(q, "y", NULL, b), JQ_OK);
  CHECK_INT(jobq_retry(q, a), JQ_FULL);
  jobq_cancel(q, b);
  CHECK_INT(jobq_retry(q, a), JS_CANCELLED);
  jobq_drain(q);
  CHECK_INT(jobq_retry(q, b), JQ_DRAINING);
  jobq_free(q);
}

TEST(requeue_runs_a_waiting_job_now) {
  struct jobq_config c = cfg_of("t:requeue");
  c.max_retries = 3;
  c.backoff_base_ns = 60 * NS_PER_S;
  struct jobq *q = jobq_new(&c, NULL);
  char a[64], b[64];
  struct jobq_publish_opts later = {.delay_ns = 60 * NS_PER_S, .max_retries = -1};
  CHECK_INT(pub(q, "a", &later, a), JQ_OK);
  CHECK(jobq_claim(q, NO_WAIT) == NULL);
  CHECK_INT(jobq_requeue(q, a), JS_SCHEDULED);
  CHECK_STATE(q, a, "queued");
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) {
    CHECK_STR(job_id(j), a);
    jobq_finish(q, j, JO_ERROR, "later", 5);         /* retrying, a minute away */
  }
  CHECK_STATE(q, a, "retrying");
  CHECK(jobq_claim(q, NO_WAIT) == NULL);
  CHECK_INT(jobq_retry(q, a), JQ_CONFLICT);          /* not failed: it has retries left */
  CHECK_INT(jobq_requeue(q, a), JS_RETRYING);
  j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) {
    CHECK_INT(job_attempt(j), 2);                    /* a requeue keeps the attempt count */
    CHECK_INT(jobq_requeue(q, a), JQ_CONFLICT);      /* running */
    jobq_finish(q, j, JO_OK, NULL, 0);
  }
  CHECK_INT(pub(q, "b", NULL, b), JQ_OK);
  CHECK_INT(jobq_requeue(q, b), JQ_CONFLICT);        /* queued already */
  jobq_free(q);
}

TEST(store_retry_and_requeue_are_durable) {
  char path[256];
  snprintf(path, sizeof path, "%s", tpath("revive.db"));
  struct jobstore *s = must_open(path);
  CHECK(s != NULL);
  if (!s) return;
  struct jobq_config c = cfg_of("t:revive");
  struct jobq *q = jobq_new(&c, s);
  char a[64], b[64];
  CHECK_INT(pub(q, "{}", NULL, a), JQ_OK);
  struct job *j = jobq_claim(q, soon());
  CHECK(j != NULL);
  if (j) jobq_finish(q, j, JO_FATAL, "no", 2);
  jobstore_flush(s);
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", a), JS_FAILED);
  CHECK_INT(jobq_retry(q, a), JS_FAILED);
  /* the call returns after the row committed */
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", a), JS_QUEUED);
  CHECK_INT(sql_int(path, "SELECT attempt FROM jobs WHERE id = ?1", a), 0);
  struct jobq_publish_opts later = {.delay_ns = 60 * NS_PER_S, .max_retries = -1};
  CHECK_INT(pub(q, "{}", &later, b), JQ_OK);
  CHECK_INT(jobq_requeue(q, b), JS_SCHEDULED);
  CHECK_INT(sql_int(path, "SELECT state FROM jobs WHERE id = ?1", b), JS_QUEUED);
  jobstore_close(s);
  jobq_free(q);
}

int main(void) {
  make_tmpdir();
  buf_init(&ibuf);
  buf_init(&rbuf);
  JL = luaL_newstate();
  luaL_openlibs(JL);
  RUN(backoff_none_exact);
  RUN(backoff_jitter_bounds);
  RUN(backoff_jitter_spread);
  RUN(backoff_uncapped_overflow);
  RUN(state_names);
  RUN(memory_lifecycle);
  RUN(no_timeout_no_deadline_and_null_result);
  RUN(data_is_copied_and_ids_unique);
  RUN(retries_then_failed);
  RUN(publish_max_retries_override);
  RUN(outcome_fatal_no_retry);
  RUN(outcome_timeout_retries);
  RUN(outcome_cancelled);
  RUN(outcome_requeue_keeps_attempt);
  RUN(capacity_full);
  RUN(idempotent_id_and_key);
  RUN(priority_then_fifo);
  RUN(many_jobs_order);
  RUN(delayed_job);
  RUN(delayed_jobs_ordered_by_run_at);
  RUN(cancel_queued_unknown_finished);
  RUN(cancel_retrying);
  RUN(cancel_running);
  RUN(cancel_wake_without_queue_lock);
  RUN(max_concurrent_one);
  RUN(claim_wakes_on_publish);
  RUN(drain_rejects_and_stops_claims);
  RUN(stop_releases_blocked_claim);
  RUN(interrupt_running);
  RUN(list_pages_and_filter);
  RUN(list_limit_zero);
  RUN(stats_counts);
  RUN(retention_prunes_finished);
  RUN(restore_drops_expired);
  RUN(json_escaping);
  RUN(store_crash_recovery_retry);
  RUN(store_crash_recovery_fail);
  RUN(store_publish_is_durable);
  RUN(caller_ids_and_keys_are_limited);
  RUN(store_outage_refuses_pauses_and_rewrites);
  RUN(store_retention_deletes_rows);
  RUN(stress_memory);
  RUN(stress_store);
  RUN(cancel_during_publish);
  RUN(reserved_batch_stays_queued_until_begin);
  RUN(max_concurrent_counts_reserved_jobs);
  RUN(cancel_reserved_job);
  RUN(drain_puts_reserved_jobs_back);
  RUN(store_reserved_row);
  RUN(max_waiting_counts_waiting_jobs_only);
  RUN(capacity_bytes_counts_data_of_unfinished_jobs);
  RUN(forget_finished_jobs_only);
  RUN(uuid_ids);
  RUN(retry_failed_and_cancelled_jobs);
  RUN(requeue_runs_a_waiting_job_now);
  RUN(store_retry_and_requeue_are_durable);
  lua_close(JL);
  buf_free(&ibuf);
  buf_free(&rbuf);
  remove_tmpdir();
  return T_DONE();
}
