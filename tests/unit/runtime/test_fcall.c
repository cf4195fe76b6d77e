/*
** Unit tests for the funcs engine (runtime/fcall.c) driven from C: a generation from
** fixtures/fcall, requests whose completion goes to pid 0 (no such process), so the MK_IO
** message is dropped at once and the drop hook records what the call thread produced.
*/
#include "registry/code.h"
#include "lua/linit.h"
#include "lua/lmod.h"
#include "runtime/fcall.h"
#include "runtime/msg.h"
#include "registry/registry.h"
#include "runtime/rt.h"
#include "value/errors.h"
#include "value/seri.h"
#include "t.h"
#include "base/timer.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void nap(void) { nanosleep(&(struct timespec){0, 1000000}, NULL); }

/* Requests whose completion was dropped: freed at rig_close, after the engine has stopped.
** A caller owns the completion message (its own mailbox), so in the host a request cannot be
** freed while its caller is still inside fcall_cancel; here the drop hook runs on the call
** thread, so freeing at once would race with a cancel still settling the claim. */
static struct fcall_req *dropped[64];
static int ndropped;

/* What the drop hook saw of one request (tag = its session). */
struct seen { int done, status, interrupted, raised, failed, nres; long long v[2]; char err[128]; };
static struct seen seen[16];
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;

static void rec_drop(void *req) {
  struct fcall_req *r = req;
  struct seen s = {1, r->status, r->call.interrupted, r->call.raised, r->call.failed, 0, {0, 0}, ""};
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  errors_open(L);
  if (r->results.len) {
    s.nres = seri_unpack(L, r->results.data, r->results.len);
    for (int i = 0; i < s.nres && i < 2; i++) s.v[i] = lua_tointeger(L, i + 1);
    if (s.nres >= 1 && errors_is(L, 1))
      snprintf(s.err, sizeof s.err, "%s %s", errors_kind(L, 1), errors_message(L, 1));
  }
  lua_close(L);
  pthread_mutex_lock(&seen_lock);
  seen[r->session] = s;
  if (ndropped < (int)(sizeof dropped / sizeof dropped[0])) dropped[ndropped++] = r;
  else fcall_req_free(r);                  /* never in these tests: they make few requests */
  pthread_mutex_unlock(&seen_lock);
}

static int never_push(lua_State *co, void *req) { (void)co; (void)req; return 0; }
static void never_cancel(void *req) { (void)req; }
static const struct io_ops rec_ops = {never_push, rec_drop, never_cancel, NULL, NULL};

static struct seen get_seen(int tag) {
  pthread_mutex_lock(&seen_lock);
  struct seen s = seen[tag];
  pthread_mutex_unlock(&seen_lock);
  return s;
}

/* Waits (bounded: 20 s) until tag was recorded. */
static struct seen wait_seen(int tag) {
  int64_t end = clock_mono_ns() + 20 * NS_PER_S;
  while (!get_seen(tag).done && clock_mono_ns() < end) nap();
  return get_seen(tag);
}

static struct registry *reg;
static struct rt *rt;

static struct codeset *build_code(void) {
  struct diag d;
  diag_init(&d);
  struct codeset *cs = codeset_build(reg, "fixtures/fcall", &d);
  for (size_t i = 0; i < d.n; i++) printf("  %s\n", d.items[i]);
  diag_free(&d);
  return cs;
}

static int rig_open(void) {
  struct diag d;
  diag_init(&d);
  struct reg_opts o = {.project_dir = "fixtures/fcall"};
  if (registry_load("fixtures/fcall/src", &o, &reg, &d) != 0) {
    for (size_t i = 0; i < d.n; i++) printf("  %s\n", d.items[i]);
    diag_free(&d);
    return -1;
  }
  diag_free(&d);
  struct codeset *cs = build_code();
  if (!cs) return -1;
  rt = rt_new("fixtures/fcall");
  rt->libs = linit_libs();
  rt->timers = timers_new();
  timers_start(rt->timers);
  rt_set_generation(rt, reg, cs);
  memset(seen, 0, sizeof seen);
  return 0;
}

static void rig_close(void) {
  for (int i = 0; i < ndropped; i++) fcall_req_free(dropped[i]);
  ndropped = 0;
  timers_free(rt->timers);
  rt_free(rt);
}

/* A request for id tagged `tag` with integer arguments (n of them) or one string. */
static struct fcall_req *req(const char *id, int tag, int n, long long a, long long b, const char *s) {
  struct fcall_req *r = fcall_req_new(id);
  lua_State *L = luaL_newstate();
  if (s) lua_pushstring(L, s);
  lua_pushinteger(L, a);
  lua_pushinteger(L, b);
  char err[64];
  seri_pack(L, 1, s ? 1 : n, &r->args, err, sizeof err);
  lua_close(L);
  r->rt = rt;
  r->pid = 0;
  r->session = (uint64_t)tag;
  r->ops = &rec_ops;
  return r;
}

/* Waits (bounded) until the engine runs `busy` calls with none queued. */
static int wait_running(struct fcall *e, int busy) {
  int64_t end = clock_mono_ns() + 20 * NS_PER_S;
  struct fcall_stats st;
  do {
    fcall_stats(e, &st);
    if (st.threads - st.idle == busy && st.queued == 0) return 0;
    nap();
  } while (clock_mono_ns() < end);
  return -1;
}

TEST(results_cross_and_errors_keep_their_kind) {
  if (rig_open() != 0) { CHECK(!"rig"); return; }
  struct fcall *e = fcall_new(rt, 4, 16);
  CHECK_INT(fcall_submit(e, req("app:add", 1, 2, 20, 22, NULL)), FCALL_OK);
  CHECK_INT(fcall_submit(e, req("app:boom", 2, 0, 0, 0, NULL)), FCALL_OK);
  CHECK_INT(fcall_submit(e, req("app:nope", 3, 0, 0, 0, NULL)), FCALL_OK);
  CHECK_INT(fcall_submit(e, req("app:proc", 4, 2, 1, 1, NULL)), FCALL_OK);   /* not a function */
  struct seen s = wait_seen(1);
  CHECK_INT(s.status, FC_RAN);
  CHECK_INT(s.failed, 0);
  CHECK_INT(s.nres, 2);
  CHECK_INT(s.v[0], 42);
  CHECK_INT(s.v[1], 440);
  s = wait_seen(2);
  CHECK_INT(s.status, FC_RAN);
  CHECK_INT(s.raised, 1);
  CHECK_STR(s.err, "CONFLICT kaputt");
  CHECK_INT(wait_seen(3).status, FC_NOT_FOUND);
  CHECK_INT(wait_seen(4).status, FC_NOT_FOUND);
  struct fcall_stats st;
  fcall_stats(e, &st);
  CHECK_INT(st.calls, 4);
  CHECK_INT(st.pools, 2);                  /* add and boom: none for unknown ids */
  fcall_free(e);
  rig_close();
}

TEST(deadline_and_cancel_stop_the_callee) {
  if (rig_open() != 0) { CHECK(!"rig"); return; }
  struct fcall *e = fcall_new(rt, 4, 16);
  int64_t t0 = clock_mono_ns();
  struct fcall_req *r = req("app:sleepy", 1, 0, 0, 0, "30s");
  r->deadline = t0 + 200 * NS_PER_MS;
  CHECK_INT(fcall_submit(e, r), FCALL_OK);
  struct fcall_req *spin = req("app:spin", 2, 0, 0, 0, NULL);
  spin->deadline = t0 + 200 * NS_PER_MS;   /* busy code: the watchdog's hook stops it */
  CHECK_INT(fcall_submit(e, spin), FCALL_OK);
  struct seen s = wait_seen(1);
  CHECK_INT(s.status, FC_RAN);
  CHECK_INT(s.interrupted, 1);
  s = wait_seen(2);
  CHECK_INT(s.status, FC_RAN);
  CHECK_INT(s.interrupted, 1);
  CHECK(clock_mono_ns() - t0 < 10 * NS_PER_S);
  /* a waiter that leaves: the 30 s sleep ends at once and the engine frees the request */
  struct fcall_req *c = req("app:sleepy", 3, 0, 0, 0, "30s");
  CHECK_INT(fcall_submit(e, c), FCALL_OK);
  CHECK_INT(wait_running(e, 1), 0);
  fcall_cancel(c);
  CHECK_INT(wait_running(e, 0), 0);
  /* GONE (freed by the engine, never posted) — or, when the woken call ended before the
  ** cancel settled the claim, posted as interrupted: never a 30 s sleep that ran out */
  struct seen gone = get_seen(3);
  CHECK(!gone.done || gone.interrupted);
  /* a deadline already past: it does not start */
  struct fcall_req *late = req("app:add", 4, 2, 1, 2, NULL);
  late->deadline = clock_mono_ns() - 1;
  CHECK_INT(fcall_submit(e, late), FCALL_OK);
  CHECK_INT(wait_seen(4).status, FC_TIMEOUT);
  fcall_free(e);
  rig_close();
}

TEST(queue_is_bounded_and_stop_answers_the_rest) {
  if (rig_open() != 0) { CHECK(!"rig"); return; }
  struct fcall *e = fcall_new(rt, 1, 1);
  CHECK_INT(fcall_submit(e, req("app:sleepy", 1, 0, 0, 0, "30s")), FCALL_OK);
  CHECK_INT(wait_running(e, 1), 0);
  CHECK_INT(fcall_submit(e, req("app:add", 2, 2, 1, 2, NULL)), FCALL_OK);   /* waits */
  struct fcall_req *over = req("app:add", 3, 2, 1, 2, NULL);
  CHECK_INT(fcall_submit(e, over), FCALL_BUSY);
  fcall_req_free(over);                    /* refused: still ours */
  int64_t t0 = clock_mono_ns();
  fcall_free(e);                            /* cancels the sleeper, answers the queued one */
  CHECK(clock_mono_ns() - t0 < 10 * NS_PER_S);
  struct seen s = get_seen(1);
  CHECK_INT(s.done, 1);
  CHECK_INT(s.interrupted, 1);
  CHECK_INT(get_seen(2).status, FC_STOPPED);
  rig_close();
}

TEST(a_reload_keeps_the_old_pools_until_their_calls_end) {
  if (rig_open() != 0) { CHECK(!"rig"); return; }
  struct fcall *e = fcall_new(rt, 4, 16);
  struct fcall_req *r = req("app:sleepy", 1, 0, 0, 0, "300ms");
  CHECK_INT(fcall_submit(e, r), FCALL_OK);
  CHECK_INT(wait_running(e, 1), 0);
  rt_set_generation(rt, registry_ref(reg), build_code());   /* a new generation's code */
  CHECK_INT(fcall_submit(e, req("app:add", 2, 2, 2, 2, NULL)), FCALL_OK);
  CHECK_INT(wait_seen(2).v[0], 4);
  struct fcall_stats st;
  fcall_stats(e, &st);
  CHECK_INT(st.sets, 2);                   /* the sleeper's set lives on */
  CHECK_INT(wait_seen(1).status, FC_RAN);
  CHECK_INT(wait_running(e, 0), 0);
  fcall_stats(e, &st);
  CHECK_INT(st.sets, 1);
  fcall_free(e);
  rig_close();
}

/* Beyond the core threads (the machine's cores) a thread starts only for a request that
** waited: six long calls still all run at once (the monitor adds threads up to max). */
TEST(long_calls_beyond_the_core_threads_all_run) {
  if (rig_open() != 0) { CHECK(!"rig"); return; }
  struct fcall *e = fcall_new(rt, 8, 16);
  for (int i = 1; i <= 6; i++) CHECK_INT(fcall_submit(e, req("app:sleepy", i, 0, 0, 0, "30s")), FCALL_OK);
  CHECK_INT(wait_running(e, 6), 0);
  struct fcall_stats st;
  fcall_stats(e, &st);
  CHECK(st.threads >= 6 && st.threads <= 8);
  fcall_free(e);                            /* cancels the six sleepers */
  for (int i = 1; i <= 6; i++) CHECK_INT(get_seen(i).interrupted, 1);
  rig_close();
}

/* Callers waiting on nested calls cannot take every thread: a nested request gets a thread
** beyond max_threads, which ends once nothing is queued. */
TEST(nested_calls_get_a_thread_beyond_the_limit) {
  if (rig_open() != 0) { CHECK(!"rig"); return; }
  struct fcall *e = fcall_new(rt, 1, 16);
  CHECK_INT(fcall_submit(e, req("app:sleepy", 1, 0, 0, 0, "30s")), FCALL_OK);
  CHECK_INT(wait_running(e, 1), 0);
  struct fcall_req *plain = req("app:add", 2, 2, 1, 1, NULL);
  CHECK_INT(fcall_submit(e, plain), FCALL_OK);     /* depth 1: waits for the one thread */
  struct fcall_req *nested = req("app:add", 3, 2, 3, 4, NULL);
  nested->depth = 2;
  CHECK_INT(fcall_submit(e, nested), FCALL_OK);    /* runs at once on an extra thread */
  struct seen s = wait_seen(3);
  CHECK_INT(s.v[0], 7);
  CHECK_INT(get_seen(1).done, 0);                  /* the sleeper still holds its thread */
  /* the extra thread took the plain request queued before it too, then ended */
  CHECK_INT(wait_seen(2).v[0], 2);
  CHECK_INT(wait_running(e, 1), 0);
  struct fcall_stats st;
  int64_t end = clock_mono_ns() + 20 * NS_PER_S;
  do { fcall_stats(e, &st); nap(); } while (st.threads != 1 && clock_mono_ns() < end);
  CHECK_INT(st.threads, 1);
  fcall_free(e);
  rig_close();
}

/* A call waiting for a state of a pool at its max_size gives up at its deadline or cancel. */
TEST(a_full_pool_does_not_outlast_the_deadline_or_a_cancel) {
  if (rig_open() != 0) { CHECK(!"rig"); return; }
  struct fcall *e = fcall_new(rt, 4, 16);
  CHECK_INT(fcall_submit(e, req("app:lonely", 1, 0, 0, 0, "30s")), FCALL_OK);
  CHECK_INT(wait_running(e, 1), 0);
  int64_t t0 = clock_mono_ns();
  struct fcall_req *r = req("app:lonely", 2, 0, 0, 0, "1ms");
  r->deadline = t0 + 200 * NS_PER_MS;
  CHECK_INT(fcall_submit(e, r), FCALL_OK);
  struct seen s = wait_seen(2);
  CHECK_INT(s.status, FC_RAN);
  CHECK_INT(s.interrupted, 1);
  CHECK(clock_mono_ns() - t0 < 10 * NS_PER_S);
  struct fcall_req *c = req("app:lonely", 3, 0, 0, 0, "1ms");
  CHECK_INT(fcall_submit(e, c), FCALL_OK);
  CHECK_INT(wait_running(e, 2), 0);                 /* it waits in the pool */
  fcall_cancel(c);
  CHECK_INT(wait_running(e, 1), 0);                 /* gave up; the sleeper still runs */
  CHECK_INT(get_seen(1).done, 0);
  fcall_free(e);
  rig_close();
}

int main(void) {
  RUN(results_cross_and_errors_keep_their_kind);
  RUN(deadline_and_cancel_stop_the_callee);
  RUN(queue_is_bounded_and_stop_answers_the_rest);
  RUN(a_reload_keeps_the_old_pools_until_their_calls_end);
  RUN(long_calls_beyond_the_core_threads_all_run);
  RUN(nested_calls_get_a_thread_beyond_the_limit);
  RUN(a_full_pool_does_not_outlast_the_deadline_or_a_cancel);
  return T_DONE();
}
