/*
** Unit tests for the runtime core (sched.c, proc.c, task.c, chan.c, rt.c) driven in-process:
** a registry generation from fixtures/runtime, one process host with two workers, processes
** spawned from C with an exit watcher that records what each one returned.
*/
#include "registry/code.h"
#include "lua/linit.h"
#include "runtime/proc.h"
#include "registry/registry.h"
#include "runtime/rt.h"
#include "runtime/scheduler.h"
#include "value/seri.h"
#include "t.h"
#include "base/timer.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct result { int done, failed, code; char text[256]; };

struct rig {
  struct rt *rt;
  struct sched *s;
  pthread_mutex_t lock;
};

static void on_exit_record(void *ud, const struct exit_info *info) {
  struct result *r = ud;
  r->failed = info->failed;
  r->code = info->exit_code;
  const char *t = info->failed ? info->error : info->out_text;
  snprintf(r->text, sizeof r->text, "%s", t ? t : "");
  __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
}

static int rig_open(struct rig *g) {
  struct diag d;
  diag_init(&d);
  struct reg_opts o = {.project_dir = "fixtures/runtime"};
  struct registry *reg = NULL;
  if (registry_load("fixtures/runtime/src", &o, &reg, &d) != 0) {
    for (size_t i = 0; i < d.n; i++) printf("  %s\n", d.items[i]);
    diag_free(&d);
    return -1;
  }
  struct codeset *cs = codeset_build(reg, "fixtures/runtime", &d);
  for (size_t i = 0; i < d.n; i++) printf("  %s\n", d.items[i]);
  diag_free(&d);
  if (!cs) return -1;
  g->rt = rt_new("fixtures/runtime");
  g->rt->libs = linit_libs();
  g->rt->timers = timers_new();
  timers_start(g->rt->timers);
  rt_set_generation(g->rt, reg, cs);
  g->s = sched_new(g->rt, "app:processes", 2);
  rt_add_sched(g->rt, "app:processes", g->s, 0);
  return sched_start(g->s);
}

static void rig_close(struct rig *g) {
  CHECK_INT(sched_wait_empty(g->s, clock_mono_ns() + 10 * NS_PER_S), 0);
  sched_free(g->s);
  timers_free(g->rt->timers);
  rt_free(g->rt);
}

/* Spawns entry with one integer or string argument (string if s != NULL). */
static uint64_t spawn(struct rig *g, const char *entry, long long n, const char *s, struct result *r) {
  lua_State *L = luaL_newstate();
  if (s) lua_pushstring(L, s);
  else lua_pushinteger(L, n);
  struct buf b;
  buf_init(&b);
  char err[100];
  seri_pack(L, 1, 1, &b, err, sizeof err);
  lua_close(L);
  struct codeset *cs = rt_code(g->rt);
  const struct code *c = codeset_get(cs, entry);
  struct spawn_opts o = {.args = b.data, .args_len = b.len, .on_exit = on_exit_record, .on_exit_ud = r};
  uint64_t pid = c ? proc_spawn(g->rt, g->s, c, &o) : 0;
  codeset_unref(cs);
  buf_free(&b);
  return pid;
}

static int wait_done(struct result *r, int n) {
  int64_t deadline = clock_mono_ns() + 30 * NS_PER_S;
  for (int i = 0; i < n; i++)
    while (!__atomic_load_n(&r[i].done, __ATOMIC_ACQUIRE))
      if (clock_mono_ns() > deadline) return -1;
  return 0;
}

TEST(thousand_processes_each_return_their_result) {
  struct rig g;
  if (rig_open(&g) != 0) { CHECK(!"rig"); return; }
  enum { N = 1000 };
  struct result *r = xcalloc(N, sizeof *r);
  for (int i = 0; i < N; i++) CHECK(spawn(&g, "app:double", i, NULL, &r[i]) != 0);
  CHECK_INT(wait_done(r, N), 0);
  int bad = 0;
  for (int i = 0; i < N; i++) if (r[i].failed || r[i].code != 2 * i) bad++;
  CHECK_INT(bad, 0);
  free(r);
  rig_close(&g);
}

TEST(ping_pong_loses_no_wakeup_and_keeps_integers) {
  struct rig g;
  if (rig_open(&g) != 0) { CHECK(!"rig"); return; }
  struct result r[2] = {{0}};
  spawn(&g, "app:pinger", 20000, NULL, &r[0]);
  spawn(&g, "app:pinger", 20000, NULL, &r[1]);
  CHECK_INT(wait_done(r, 2), 0);
  CHECK_INT(r[0].failed, 0);
  CHECK_INT(r[0].code, 20000);
  CHECK_INT(r[1].code, 20000);
  rig_close(&g);
}

TEST(channels_select_and_timeouts) {
  struct rig g;
  if (rig_open(&g) != 0) { CHECK(!"rig"); return; }
  struct result r = {0};
  spawn(&g, "app:chans", 0, NULL, &r);
  CHECK_INT(wait_done(&r, 1), 0);
  CHECK_STR(r.text, "ok");
  rig_close(&g);
}

TEST(sleep_waits_at_least_its_duration) {
  struct rig g;
  if (rig_open(&g) != 0) { CHECK(!"rig"); return; }
  struct result r[3] = {{0}};
  spawn(&g, "app:sleeper", 30, NULL, &r[0]);
  spawn(&g, "app:sleeper", 10, NULL, &r[1]);
  spawn(&g, "app:sleeper", 1, NULL, &r[2]);
  CHECK_INT(wait_done(r, 3), 0);
  CHECK(r[0].code >= 30);
  CHECK(r[1].code >= 10);
  CHECK(r[2].code >= 1);
  rig_close(&g);
}

TEST(names_are_released_when_the_owner_exits) {
  struct rig g;
  if (rig_open(&g) != 0) { CHECK(!"rig"); return; }
  struct result r = {0};
  spawn(&g, "app:namer", 0, "svc-name", &r);
  CHECK_INT(wait_done(&r, 1), 0);
  CHECK_INT(r.failed, 0);
  CHECK_INT(sched_wait_empty(g.s, clock_mono_ns() + 5 * NS_PER_S), 0);
  CHECK_INT((long long)rt_name_lookup(g.rt, "svc-name"), 0);
  uint64_t owner = 0;
  CHECK_INT(rt_name_register(g.rt, "x", 7, &owner), 0);
  CHECK_INT(rt_name_register(g.rt, "x", 8, &owner), -1);
  CHECK_INT((long long)owner, 7);
  CHECK_INT(rt_name_unregister(g.rt, "x", 8), 0);
  CHECK_INT(rt_name_unregister(g.rt, "x", 7), 1);
  rig_close(&g);
}

TEST(an_error_in_a_spawned_coroutine_fails_the_process) {
  struct rig g;
  if (rig_open(&g) != 0) { CHECK(!"rig"); return; }
  struct result r = {0};
  spawn(&g, "app:crash", 0, NULL, &r);
  CHECK_INT(wait_done(&r, 1), 0);
  CHECK_INT(r.failed, 1);
  CHECK_CONTAINS(r.text, "boom in a coroutine");
  CHECK_CONTAINS(r.text, "crash.lua:2:");
  rig_close(&g);
}

TEST(monitors_receive_every_exit) {
  struct rig g;
  if (rig_open(&g) != 0) { CHECK(!"rig"); return; }
  struct result r = {0};
  spawn(&g, "app:fanout", 500, NULL, &r);
  CHECK_INT(wait_done(&r, 1), 0);
  CHECK_INT(r.failed, 0);
  CHECK_INT(r.code, 500 * 501);               /* sum of 2*i for i = 1..500 */
  rig_close(&g);
}

TEST(pid_strings_parse_back) {
  CHECK_INT((long long)rt_pid_parse("{app:processes|0x0001f}"), 31);
  CHECK_INT((long long)rt_pid_parse("{node@app:h|0xABC}"), 0xabc);
  CHECK_INT((long long)rt_pid_parse("{app:processes|31}"), 0);
  CHECK_INT((long long)rt_pid_parse("{app:processes|0x1f"), 0);
  CHECK_INT((long long)rt_pid_parse("relay"), 0);
}

int main(void) {
  RUN(thousand_processes_each_return_their_result);
  RUN(ping_pong_loses_no_wakeup_and_keeps_integers);
  RUN(channels_select_and_timeouts);
  RUN(sleep_waits_at_least_its_duration);
  RUN(names_are_released_when_the_owner_exits);
  RUN(an_error_in_a_spawned_coroutine_fails_the_process);
  RUN(monitors_receive_every_exit);
  RUN(pid_strings_parse_back);
  return T_DONE();
}
