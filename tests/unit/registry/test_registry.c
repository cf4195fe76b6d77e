/*
** test_registry.c — the registry loader against the fixture projects in
** tests/fixtures/registry (run with the working directory tests/).
*/
#include "t.h"
#include "registry/reg_internal.h"
#include "registry/registry.h"
#include "base/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX "fixtures/registry/"
#define ECHO "../examples/echo-service"   /* the seed 003 app itself, not a copy */
#define HTTP_APP "../examples/http-async-task"   /* likewise seed 000 */

/* Loads <proj>/src with project_dir = proj. */
static int load_ov(const char *proj, const struct reg_override *ov, size_t n, struct registry **r,
                   struct diag *d) {
  char src[512];
  snprintf(src, sizeof src, "%s/src", proj);
  struct reg_opts o = {proj, ov, n};
  diag_init(d);
  return registry_load(src, &o, r, d);
}

static int load(const char *proj, struct registry **r, struct diag *d) { return load_ov(proj, NULL, 0, r, d); }

/* The first diagnostic containing `needle`, or NULL. */
static const char *diag_find(const struct diag *d, const char *needle) {
  for (size_t i = 0; i < d->n; i++)
    if (strstr(d->items[i], needle)) return d->items[i];
  return NULL;
}

/* Shows the diagnostics when the current test has failed so far. */
static void dump(const struct diag *d) {
  for (size_t i = 0; t_cur_failed && i < d->n; i++) printf("    | %s\n", d->items[i]);
}

static const char *data_str(const struct registry *r, const char *id, const char *path) {
  const struct reg_entry *e = registry_get(r, id);
  return e ? val_str(val_path(e->data, path), NULL) : NULL;
}

static char *slurp(const char *path) { return file_read_all(path, NULL); }

TEST(echo_service_loads) {
  struct registry *r;
  struct diag d;
  CHECK_INT(load(ECHO, &r, &d), 0);
  CHECK_INT(d.errors, 0);
  CHECK_INT(d.warnings, 0);
  dump(&d);
  CHECK_INT(registry_count(r), 6);
  static const char *const ids[] = {"app:terminal", "app:processes", "app:cli", "app:relay",
                                    "app:relay-service", "app:worker"};
  for (size_t i = 0; i < 6 && r; i++) CHECK_STR(registry_at(r, i)->id, ids[i]);
  const struct reg_entry *cli = registry_get(r, "app:cli");
  CHECK(cli != NULL);
  if (cli) {
    char *text = slurp(ECHO "/src/cli.lua");
    const struct val *src = val_get(cli->data, "source");
    CHECK_STR(val_str(src, NULL), text);
    CHECK_STR(src ? src->u.str.origin : NULL, "src/cli.lua");
    CHECK_STR(cli->file, "src/_index.yaml");
    CHECK_INT(cli->line, 15);
    CHECK_STR(cli->kind, "process.lua");
    CHECK_STR(cli->ns, "app");
    CHECK_STR(cli->name, "cli");
    CHECK_INT(val_len(val_get(cli->data, "modules")), 4);
    CHECK_STR(val_str(val_at(val_get(cli->data, "modules"), 3), NULL), "channel");
    free(text);
  }
  CHECK_STR(data_str(r, "app:relay-service", "process"), "app:relay");
  CHECK_STR(data_str(r, "app:relay-service", "host"), "app:processes");
  const struct reg_entry *svc = registry_get(r, "app:relay-service");
  CHECK(svc && val_bool(val_path(svc->data, "lifecycle.auto_start"), 0) == 1);
  CHECK_STR(data_str(r, "app:relay-service", "lifecycle.restart.initial_delay"), "1s");
  CHECK_STR(data_str(r, "app:relay-service", "lifecycle.restart.max_delay"), "90s");
  CHECK(svc && val_num(val_path(svc->data, "lifecycle.restart.backoff_factor"), 0) == 2.0);
  CHECK(svc && val_len(val_get(svc->data, "input")) == 0 && val_get(svc->data, "input")->type == V_LIST);
  const struct reg_entry *ph = registry_get(r, "app:processes");
  CHECK(ph && val_int(val_path(ph->data, "host.queue_size"), -1) == 1024);
  CHECK(ph && val_int(val_path(ph->data, "host.local_queue_size"), -1) == 256);
  CHECK(ph && val_int(val_path(ph->data, "host.workers"), -1) == 0);
  const struct reg_entry *term = registry_get(r, "app:terminal");
  CHECK(term && val_bool(val_get(term->data, "hide_logs"), -1) == 0);
  registry_unref(r);
  diag_free(&d);
}

TEST(http_async_task_loads) {
  struct registry *r;
  struct diag d;
  CHECK_INT(load(HTTP_APP, &r, &d), 0);
  dump(&d);
  CHECK_INT(d.n, 0);
  CHECK_INT(registry_count(r), 5);
  const struct reg_entry *ep = registry_get(r, "app:process_task.endpoint");
  CHECK(ep != NULL);
  CHECK_STR(data_str(r, "app:process_task.endpoint", "func"), "app:process_task");
  CHECK_STR(ep ? val_str(val_get(ep->meta, "router"), NULL) : NULL, "app:router");
  CHECK_STR(data_str(r, "app:process_task.endpoint", "method"), "POST");
  CHECK_STR(data_str(r, "app:process_task.endpoint", "path"), "/tasks");
  const struct reg_entry *rt = registry_get(r, "app:router");
  CHECK_STR(rt ? val_str(val_get(rt->meta, "server"), NULL) : NULL, "app:gateway");
  CHECK_STR(data_str(r, "app:router", "prefix"), "/api");
  CHECK_INT(rt ? val_len(val_get(rt->data, "middleware")) : 99, 0);
  CHECK_STR(data_str(r, "app:gateway", "addr"), ":8080");
  CHECK_STR(data_str(r, "app:gateway", "timeouts.read"), "0");
  CHECK_STR(data_str(r, "app:process_task", "method"), "handler");
  CHECK_STR(data_str(r, "app:process_task", "modules.3"), "logger");
  const struct reg_entry *fn = registry_get(r, "app:process_task");
  CHECK_STR(fn ? val_get(fn->data, "source")->u.str.origin : NULL, "src/handler.lua");
  CHECK_INT(val_int(val_path(fn ? fn->data : NULL, "pool.max_size"), 0), 100);  /* default filled */
  registry_unref(r);
  diag_free(&d);
}

TEST(features_files_and_forms) {
  struct registry *r;
  struct diag d;
  CHECK_INT(load(FIX "features", &r, &d), 0);
  CHECK_INT(d.errors, 0);
  CHECK_INT(d.warnings, 1);   /* the duplicate */
  CHECK_INT(registry_count(r), 18);
  CHECK_STR(registry_at(r, 10) ? registry_at(r, 10)->id : NULL, "api:ping");
  CHECK_STR(registry_at(r, 17) ? registry_at(r, 17)->id : NULL, "tools:single");
  CHECK(registry_get(r, "bad:nokind") == NULL);          /* node_modules and .hidden skipped */
  CHECK(registry_get(r, "app:not-an-entry") == NULL);   /* data file without namespace */
  /* single-entry form */
  const struct reg_entry *single = registry_get(r, "tools:single");
  CHECK(single && val_int(val_get(single->data, "value"), 0) == 42);
  CHECK(single && val_get(single->data, "namespace") == NULL && val_get(single->data, "name") == NULL);
  CHECK_STR(single ? val_str(val_get(single->meta, "title"), NULL) : NULL, "Single");
  CHECK_STR(single ? single->file : NULL, "src/more/single.yml");
  /* JSON file: typed scalars, file meta, file:// relative to the json file */
  const struct reg_entry *ping = registry_get(r, "api:ping");
  CHECK(ping && val_int(val_get(ping->data, "count"), 0) == 3);
  CHECK(ping && val_num(val_get(ping->data, "ratio"), 0) == 0.5);
  CHECK(ping && val_bool(val_get(ping->data, "on"), 0) == 1);
  CHECK(ping && val_get(ping->data, "none") && val_get(ping->data, "none")->type == V_NULL);
  CHECK_STR(ping ? val_str(val_get(ping->meta, "source"), NULL) : NULL, "json");
  CHECK_STR(data_str(r, "api:ping", "source"), "local function handler() return \"hello\" end\n"
                                              "return { handler = handler, main = handler }\n");
  CHECK_INT(ping ? ping->line : 0, 5);
  /* *.registry.lua */
  CHECK(registry_get(r, "gen:item3") != NULL);
  CHECK_STR(data_str(r, "gen:svc", "process"), "gen:proc");
  CHECK_STR(data_str(r, "gen:svc", "host"), "gen:host");
  CHECK_STR(data_str(r, "gen:proc", "method"), "main");
  const struct reg_entry *svc = registry_get(r, "gen:svc");
  CHECK(svc && val_len(val_get(svc->data, "input")) == 2);
  CHECK(svc && val_int(val_path(svc->data, "input.1"), 0) == 1);
  const struct reg_entry *item = registry_get(r, "gen:item2");
  CHECK(item && val_int(val_get(item->data, "index"), 0) == 2);
  CHECK_STR(item ? item->file : NULL, "src/gen.registry.lua");
  registry_unref(r);
  diag_free(&d);
}

TEST(features_data_refs_defaults_meta) {
  struct registry *r;
  struct diag d;
  CHECK_INT(load(FIX "features", &r, &d), 0);
  /* flat data and explicit data: */
  const struct reg_entry *cfg = registry_get(r, "app:config");
  CHECK(cfg && val_get(cfg->data, "kind") == NULL && val_get(cfg->data, "meta") == NULL);
  const struct val *list = cfg ? val_path(cfg->data, "nested.list") : NULL;
  CHECK_INT(val_len(list), 6);
  CHECK(list && val_at(list, 0)->type == V_INT && val_at(list, 1)->type == V_STR);
  CHECK(list && val_at(list, 2)->type == V_NUM && val_at(list, 3)->type == V_BOOL);
  CHECK(list && val_at(list, 4)->type == V_NULL && val_at(list, 5)->type == V_STR);
  const struct reg_entry *ex = registry_get(r, "app:explicit");
  CHECK(ex && val_int(val_get(ex->data, "a"), 0) == 1 && val_len(val_get(ex->data, "b")) == 2);
  CHECK(ex && val_get(ex->data, "ignored") == NULL);
  /* file:///abs is relative to the source root */
  char *util = slurp(FIX "features/src/lib/util.lua");
  CHECK_STR(data_str(r, "app:util_lib", "source"), util);
  free(util);
  const struct reg_entry *lib = registry_get(r, "app:util_lib");
  CHECK_STR(lib ? val_get(lib->data, "source")->u.str.origin : NULL, "src/lib/util.lua");
  /* refs qualified */
  CHECK_STR(data_str(r, "app:hello", "imports.util"), "app:util_lib");
  CHECK_STR(data_str(r, "app:hello.endpoint", "func"), "app:hello");
  /* defaults, nested, and values kept */
  const struct reg_entry *gw = registry_get(r, "app:gateway");
  CHECK(gw && val_int(val_path(gw->data, "lifecycle.restart.max_attempts"), -1) == 3);
  CHECK(gw && val_num(val_path(gw->data, "lifecycle.restart.jitter"), 0) == 0.1);
  CHECK_STR(data_str(r, "app:gateway", "lifecycle.startup"), "required");
  CHECK_STR(data_str(r, "app:gateway", "lifecycle.stop_timeout"), "10s");
  CHECK_STR(data_str(r, "app:gateway", "timeouts.read"), "5s");
  CHECK_STR(data_str(r, "app:gateway", "timeouts.write"), "0");   /* integer → duration string */
  CHECK(gw && val_int(val_path(gw->data, "host.buffer_size"), 0) == 1024);
  CHECK(gw && val_get(gw->data, "tls") == NULL);
  CHECK_STR(data_str(r, "app:router", "prefix"), "/api");
  CHECK(val_get(registry_get(r, "app:router")->data, "options")->type == V_MAP);
  CHECK(val_get(registry_get(r, "gen:item1")->data, "tags") != NULL);
  /* file meta merged under entry meta, entry keys win */
  const struct reg_entry *rt = registry_get(r, "app:router");
  CHECK_STR(val_str(val_get(rt->meta, "owner"), NULL), "team-a");
  CHECK_STR(val_str(val_get(rt->meta, "tier"), NULL), "edge");
  CHECK_STR(val_str(val_get(rt->meta, "server"), NULL), "app:gateway");
  CHECK_STR(val_str(val_get(registry_get(r, "app:hello")->meta, "tier"), NULL), "core");
  CHECK_INT(val_len(registry_get(r, "gen:item1")->meta), 0);
  /* duplicate: warning with both places, the last wins */
  CHECK_STR(data_str(r, "app:dup", "value"), "second");
  const char *w = diag_find(&d, "duplicate entry id app:dup");
  CHECK(w && strncmp(w, "src/more/dup.yaml:3: warning:", 29) == 0);
  CHECK_CONTAINS(w, "src/_index.yaml:70");
  /* the Lua sandbox had no io/os/require/load */
  registry_unref(r);
  struct registry *s;
  diag_free(&d);
  CHECK_INT(load(FIX "broken/lua_sandbox", &s, &d), 0);
  CHECK(val_bool(val_get(registry_get(s, "app:probe")->data, "sandboxed"), 0) == 1);
  registry_unref(s);
  diag_free(&d);
}

static void unset_env(void) {
  unsetenv("TH_TEST_ADDR");
  unsetenv("TH_TEST_PORT");
  unsetenv("TH_TEST_QSIZE");
  unsetenv("TH_TEST_HOST");
}

static const struct val *y(const struct registry *r, const char *path) {
  const struct reg_entry *e = registry_get(r, "y:scalars");
  return e ? val_path(e->data, path) : NULL;
}

TEST(yaml_scalars_aliases_merge) {
  struct registry *r;
  struct diag d;
  CHECK_INT(load(FIX "yaml", &r, &d), 0);
  dump(&d);
  CHECK_INT(d.n, 0);
  const struct reg_entry *h = registry_get(r, "y:host"), *o = registry_get(r, "y:other");
  CHECK(h && val_bool(val_path(h->data, "lifecycle.auto_start"), 0) == 1);
  CHECK(h && val_int(val_path(h->data, "lifecycle.restart.max_attempts"), 0) == 7);
  CHECK_STR(h ? val_str(val_path(h->data, "lifecycle.restart.max_delay"), NULL) : NULL, "90s");
  CHECK(o && val_bool(val_path(o->data, "lifecycle.auto_start"), 1) == 0);
  CHECK(o && val_int(val_path(o->data, "lifecycle.restart.max_attempts"), 0) == 7);
  CHECK_STR(o ? val_str(val_path(o->data, "lifecycle.restart.initial_delay"), NULL) : NULL, "2s");
  CHECK(val_int(y(r, "dec"), 0) == 42 && y(r, "dec")->type == V_INT);
  CHECK(val_int(y(r, "neg"), 0) == -7);
  CHECK(val_int(y(r, "hex"), 0) == 31);
  CHECK(val_int(y(r, "oct"), 0) == 15);
  CHECK(y(r, "float") && y(r, "float")->type == V_NUM && val_num(y(r, "float"), 0) == 1.5);
  CHECK(y(r, "exp") && y(r, "exp")->type == V_NUM && val_num(y(r, "exp"), 0) == 1000);
  CHECK(val_num(y(r, "inf"), 0) < -1e308);
  CHECK(y(r, "nan") && y(r, "nan")->type == V_NUM && y(r, "nan")->u.n != y(r, "nan")->u.n);
  CHECK(y(r, "tilde") && y(r, "tilde")->type == V_NULL);
  CHECK(y(r, "empty") && y(r, "empty")->type == V_NULL);
  CHECK(val_bool(y(r, "upper_true"), 0) == 1);
  CHECK_STR(val_str(y(r, "yes_is_string"), NULL), "yes");
  CHECK_STR(val_str(y(r, "quoted_int"), NULL), "12");
  CHECK_STR(val_str(y(r, "single_quoted"), NULL), "true");
  CHECK_STR(val_str(y(r, "dur"), NULL), "10s");
  CHECK_STR(val_str(y(r, "version_like"), NULL), "1.0.2");
  CHECK_STR(val_str(y(r, "block"), NULL), "line one\nline two\n");
  CHECK_STR(val_str(y(r, "1"), NULL), "integer key");
  CHECK_INT(y(r, "dec") ? y(r, "dec")->line : 0, 24);
  registry_unref(r);
  diag_free(&d);

  CHECK_INT(load(FIX "broken/dupkey", &r, &d), -1);
  CHECK(diag_find(&d, "src/_index.yaml:6: mapping key 'x' is already defined"));
  dump(&d);
  diag_free(&d);
}

TEST(env_placeholders) {
  struct registry *r;
  struct diag d;
  unset_env();
  CHECK_INT(load(FIX "features", &r, &d), 0);
  CHECK_STR(data_str(r, "app:gateway", "addr"), ":9090");
  CHECK_STR(data_str(r, "app:config", "port"), "8181");   /* env.variable default */
  CHECK_STR(data_str(r, "app:config", "url"), "http://localhost:8181/x");
  const struct reg_entry *w = registry_get(r, "app:workers");
  CHECK(w && val_get(val_get(w->data, "host"), "queue_size")->type == V_INT);
  CHECK(w && val_int(val_path(w->data, "host.queue_size"), 0) == 2048);
  registry_unref(r);
  diag_free(&d);

  setenv("TH_TEST_ADDR", "127.0.0.1:7000", 1);
  setenv("TH_TEST_PORT", "9999", 1);
  setenv("TH_TEST_QSIZE", "64", 1);
  CHECK_INT(load(FIX "features", &r, &d), 0);
  CHECK_STR(data_str(r, "app:gateway", "addr"), "127.0.0.1:7000");
  CHECK_STR(data_str(r, "app:config", "port"), "9999");
  CHECK_STR(data_str(r, "app:config", "url"), "http://localhost:9999/x");
  w = registry_get(r, "app:workers");
  CHECK(w && val_int(val_path(w->data, "host.queue_size"), 0) == 64);
  registry_unref(r);
  diag_free(&d);

  setenv("TH_TEST_QSIZE", "lots", 1);   /* not an int once substituted */
  CHECK_INT(load(FIX "features", &r, &d), -1);
  CHECK_CONTAINS(diag_find(&d, "queue_size"), "src/_index.yaml:54: app:workers: host.queue_size must be an integer");
  diag_free(&d);
  unset_env();

  CHECK_INT(load(FIX "broken/env_unset", &r, &d), -1);
  CHECK(r == NULL);
  CHECK_INT(d.errors, 2);
  CHECK(diag_find(&d, "src/_index.yaml:6: environment variable TH_SURELY_UNSET_VAR is not set and has no default"));
  CHECK(diag_find(&d, "src/_index.yaml:7: unterminated ${env:...} placeholder"));
  dump(&d);
  diag_free(&d);
}

TEST(overrides) {
  static const char *const specs[] = {
    "app:gateway:addr=:7070",
    "app:gateway:lifecycle.restart.max_attempts=5",
    "app:config:deep.er.value=true",
    "app:router:meta.owner=ops",
    "app:explicit:kind=registry.entry",
    "app:hello:method=main",
    "app:workers:host.workers=0x10",
  };
  struct reg_override ov[countof(specs)];
  char *store[countof(specs)];
  for (size_t i = 0; i < countof(specs); i++) CHECK_INT(registry_parse_override(specs[i], &ov[i], &store[i]), 0);
  struct registry *r;
  struct diag d;
  CHECK_INT(load_ov(FIX "features", ov, countof(specs), &r, &d), 0);
  dump(&d);
  CHECK_STR(data_str(r, "app:gateway", "addr"), ":7070");
  const struct reg_entry *gw = registry_get(r, "app:gateway");
  CHECK(gw && val_int(val_path(gw->data, "lifecycle.restart.max_attempts"), 0) == 5);
  CHECK_STR(data_str(r, "app:gateway", "lifecycle.restart.max_delay"), "90s");
  const struct reg_entry *cfg = registry_get(r, "app:config");
  CHECK(cfg && val_bool(val_path(cfg->data, "deep.er.value"), 0) == 1);
  CHECK_STR(val_str(val_get(registry_get(r, "app:router")->meta, "owner"), NULL), "ops");
  CHECK_STR(data_str(r, "app:hello", "method"), "main");
  CHECK(val_int(val_path(registry_get(r, "app:workers")->data, "host.workers"), 0) == 16);
  registry_unref(r);
  diag_free(&d);

  /* an override can break validation, and can name a missing entry */
  struct reg_override bad[2];
  char *bstore[2];
  CHECK_INT(registry_parse_override("app:nope:x=1", &bad[0], &bstore[0]), 0);
  CHECK_INT(registry_parse_override("app:gateway:addr=12", &bad[1], &bstore[1]), 0);
  CHECK_INT(load_ov(FIX "features", bad, 2, &r, &d), -1);
  CHECK(diag_find(&d, "override app:nope:x: no entry app:nope"));
  CHECK(diag_find(&d, "app:gateway: addr must be a string, got an int"));
  diag_free(&d);
  /* kind replacement is applied before validation */
  struct reg_override k;
  char *kstore;
  CHECK_INT(registry_parse_override("app:config:kind=http.service", &k, &kstore), 0);
  CHECK_INT(load_ov(FIX "features", &k, 1, &r, &d), -1);
  CHECK(diag_find(&d, "app:config: missing required field addr"));
  diag_free(&d);
  free(kstore);
  for (size_t i = 0; i < 2; i++) free(bstore[i]);
  for (size_t i = 0; i < countof(specs); i++) free(store[i]);
}

TEST(parse_override_edges) {
  struct reg_override o;
  char *s;
  CHECK_INT(registry_parse_override("app:gw:addr=:9090", &o, &s), 0);
  CHECK_STR(o.id, "app:gw");
  CHECK_STR(o.path, "addr");
  CHECK_STR(o.value, ":9090");
  free(s);
  CHECK_INT(registry_parse_override("app.api:gw:lifecycle.auto_start=a=b", &o, &s), 0);
  CHECK_STR(o.id, "app.api:gw");
  CHECK_STR(o.path, "lifecycle.auto_start");
  CHECK_STR(o.value, "a=b");
  free(s);
  CHECK_INT(registry_parse_override("app:gw:meta.x=", &o, &s), 0);
  CHECK_STR(o.path, "meta.x");
  CHECK_STR(o.value, "");
  free(s);
  static const char *const bad[] = {"app:gw:addr", "gw:addr=1", ":gw:addr=1", "app::addr=1",
                                    "app:gw:=1", "app:gw:a..b=1", "app:gw:.a=1", "app:gw:a.=1", "=x", ""};
  for (size_t i = 0; i < countof(bad); i++) {
    s = (char *)"untouched";
    CHECK_INT(registry_parse_override(bad[i], &o, &s), -1);
    CHECK(s == NULL);
  }
  char *q = registry_qualify("app", "relay");
  CHECK_STR(q, "app:relay");
  free(q);
  q = registry_qualify("app", "other:relay");
  CHECK_STR(q, "other:relay");
  free(q);
}

TEST(broken_yaml_syntax) {
  struct registry *r = (struct registry *)1;
  struct diag d;
  CHECK_INT(load(FIX "broken/syntax", &r, &d), -1);
  CHECK(r == NULL);
  CHECK_INT(d.errors, 1);
  CHECK(d.n == 1 && strncmp(d.items[0], "src/_index.yaml:6: ", 19) == 0);
  dump(&d);
  diag_free(&d);
}

TEST(broken_file_refs) {
  struct registry *r;
  struct diag d;
  CHECK_INT(load(FIX "broken/escape", &r, &d), -1);
  CHECK_INT(d.errors, 3);
  CHECK(diag_find(&d, "src/_index.yaml:8: file://../secret.lua escapes the source directory"));
  CHECK(diag_find(&d, "src/_index.yaml:11: file:///../secret.lua escapes the source directory"));
  CHECK(diag_find(&d, "src/_index.yaml:14: cannot read file://nope.lua: No such file or directory"));
  dump(&d);
  diag_free(&d);

  /* a symlink inside the source dir that leads outside is refused too */
  char tmpl[] = "/tmp/th_regtest_XXXXXX";
  char *dir = mkdtemp(tmpl);
  CHECK(dir != NULL);
  char p[4][600];
  snprintf(p[0], sizeof p[0], "%s/src", dir);
  snprintf(p[1], sizeof p[1], "%s/outside.lua", dir);
  snprintf(p[2], sizeof p[2], "%s/src/link.lua", dir);
  snprintf(p[3], sizeof p[3], "%s/src/_index.yaml", dir);
  CHECK_INT(mkdir(p[0], 0700), 0);
  FILE *f = fopen(p[1], "w");
  fputs("return {}\n", f);
  fclose(f);
  CHECK_INT(symlink(p[1], p[2]), 0);
  f = fopen(p[3], "w");
  fputs("namespace: t\nname: x\nkind: library.lua\nsource: file://link.lua\n", f);
  fclose(f);
  CHECK_INT(load(dir, &r, &d), -1);
  CHECK(diag_find(&d, "src/_index.yaml:4: file://link.lua escapes the source directory"));
  dump(&d);
  diag_free(&d);
  unlink(p[3]);
  unlink(p[2]);
  unlink(p[1]);
  rmdir(p[0]);
  rmdir(dir);
}

TEST(broken_references) {
  struct registry *r;
  struct diag d;
  CHECK_INT(load(FIX "broken/refs", &r, &d), -1);
  CHECK_INT(d.errors, 3);
  CHECK(diag_find(&d, "src/_index.yaml:7: app:svc: process 'app:nope' not found"));
  CHECK(diag_find(&d, "src/_index.yaml:8: app:svc: host 'app:terminal' is a terminal.host, expected process.host"));
  CHECK(diag_find(&d, "src/_index.yaml:14: app:ok_svc: lifecycle.requires[1] 'app:ghost' not found"));
  dump(&d);
  diag_free(&d);
}

TEST(broken_types) {
  struct registry *r;
  struct diag d;
  CHECK_INT(load(FIX "broken/types", &r, &d), -1);
  CHECK(diag_find(&d, "src/_index.yaml:5: app:gw: addr must be a string, got a list"));
  CHECK(diag_find(&d, "src/_index.yaml:7: app:gw: timeouts.read: invalid duration \"soon\""));
  CHECK(diag_find(&d, "src/_index.yaml:20: app:ep: method must be one of \"GET\", \"POST\""));
  CHECK(diag_find(&d, "src/_index.yaml:21: app:ep: path must start with \"/\""));
  CHECK(diag_find(&d, "src/_index.yaml:23: app:ep2: missing required field path"));
  CHECK(diag_find(&d, "src/_index.yaml:23: app:ep2: missing required field meta.router"));
  CHECK(diag_find(&d, "src/_index.yaml:30: app:h: host.workers must be an integer, got a string"));
  CHECK(diag_find(&d, "src/_index.yaml:32: app:h: lifecycle.auto_start must be a boolean, got a string"));
  CHECK(diag_find(&d, "src/_index.yaml:33: warning: app:odd: unknown kind some.future.kind"));
  CHECK_INT(d.errors, 8);
  CHECK_INT(d.warnings, 1);
  dump(&d);
  diag_free(&d);
}

TEST(broken_entries) {
  struct registry *r;
  struct diag d;
  CHECK_INT(load(FIX "broken/entries", &r, &d), -1);
  CHECK(diag_find(&d, "src/_index.yaml:5: entry in namespace app has no name"));
  CHECK(diag_find(&d, "src/_index.yaml:7: entry app:nokind has no kind"));
  CHECK(diag_find(&d, "src/_index.yaml:9: entry name 'bad:name' must not contain ':'"));
  CHECK(diag_find(&d, "src/_index.yaml:11: an entry must be a map, got a string"));
  CHECK(diag_find(&d, "src/_index.yaml:14: entry app:badmeta: meta must be a map"));
  CHECK_INT(d.errors, 5);
  dump(&d);
  diag_free(&d);

  CHECK_INT(registry_load("fixtures/registry/does-not-exist", NULL, &r, (diag_init(&d), &d)), -1);
  CHECK(diag_find(&d, "fixtures/registry/does-not-exist: cannot open the source directory"));
  diag_free(&d);
}

TEST(broken_lua_files) {
  static const struct { const char *proj, *msg; } cases[] = {
    {FIX "broken/lua_error", "src/x.registry.lua:3: something broke"},
    {FIX "broken/lua_loop", "instruction budget exceeded"},
    {FIX "broken/lua_syntax", "src/x.registry.lua:3: "},
    {FIX "broken/lua_func", "src/x.registry.lua:1: entries[1].fn: a function cannot be converted"},
    {FIX "broken/lua_ret", "src/x.registry.lua: a registry file must return a table (got number)"},
    {FIX "broken/lua_nons", "src/x.registry.lua: a registry file needs a non-empty namespace"},
  };
  for (size_t i = 0; i < countof(cases); i++) {
    struct registry *r;
    struct diag d;
    CHECK_INT(load(cases[i].proj, &r, &d), -1);
    CHECK_INT(d.errors, 1);
    if (!diag_find(&d, cases[i].msg)) {
      printf("  case %s: no \"%s\"\n", cases[i].proj, cases[i].msg);
      dump(&d);
      t_cur_failed = 1;
    }
    diag_free(&d);
  }
  struct registry *r;
  struct diag d;
  load(FIX "broken/lua_loop", &r, &d);
  CHECK(d.n == 1 && strncmp(d.items[0], "src/x.registry.lua:", 19) == 0 && d.items[0][19] >= '2');
  diag_free(&d);
}

TEST(generations_and_refcount) {
  struct registry *a, *b;
  struct diag d;
  CHECK_INT(load(ECHO, &a, &d), 0);
  diag_free(&d);
  CHECK_INT(load(ECHO, &b, &d), 0);
  diag_free(&d);
  CHECK(registry_version(b) > registry_version(a));
  CHECK(registry_get(a, "app:cli") != registry_get(b, "app:cli"));
  CHECK(registry_ref(a) == a);
  registry_unref(a);   /* back to 1: still usable */
  CHECK_STR(registry_get(a, "app:worker")->kind, "process.lua");
  registry_unref(a);   /* freed (ASan would flag a leak or a later use) */
  CHECK_STR(registry_get(b, "app:worker")->kind, "process.lua");
  CHECK(registry_get(b, "app:nope") == NULL);
  CHECK(registry_at(b, 6) == NULL);
  registry_unref(b);
  /* no project dir: paths as given */
  CHECK_INT(registry_load(ECHO "/src", NULL, &a, (diag_init(&d), &d)), 0);
  CHECK_STR(registry_get(a, "app:cli")->file, ECHO "/src/_index.yaml");
  CHECK_STR(val_get(registry_get(a, "app:cli")->data, "source")->u.str.origin, ECHO "/src/cli.lua");
  registry_unref(a);
  diag_free(&d);
}

/* Several threads build generations at once; one generation is shared and released by all. */
struct worker_arg {
  struct registry *shared;
  int failures;
};

static void *load_worker(void *p) {
  struct worker_arg *a = p;
  for (int i = 0; i < 4; i++) {
    struct registry *r;
    struct diag d;
    if (load(i % 2 ? ECHO : HTTP_APP, &r, &d) != 0) a->failures++;
    else if (!registry_get(r, "app:processes") || !registry_get(a->shared, "app:relay")) a->failures++;
    registry_unref(r);
    diag_free(&d);
  }
  registry_unref(a->shared);
  return NULL;
}

TEST(concurrent_generations) {
  struct registry *shared;
  struct diag d;
  CHECK_INT(load(ECHO, &shared, &d), 0);
  diag_free(&d);
  pthread_t th[4];
  struct worker_arg args[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (struct worker_arg){registry_ref(shared), 0};
    pthread_create(&th[i], NULL, load_worker, &args[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    CHECK_INT(args[i].failures, 0);
  }
  CHECK_STR(registry_get(shared, "app:cli")->kind, "process.lua");
  registry_unref(shared);
}

static const char *const type_names[] = {"string", "int", "number", "bool", "duration",
                                         "list", "map", "ref", "any", "size"};

static int spec_ok(const struct val *spec, char *where, size_t n);

static int fields_ok(const struct val *fields, const char *where) {
  for (size_t i = 0; i < val_len(fields); i++) {
    char at[256];
    snprintf(at, sizeof at, "%s.%s", where, val_key_at(fields, i));
    if (!spec_ok(val_at(fields, i), at, sizeof at)) return 0;
  }
  return 1;
}

/* Every spec of kinds.yaml uses a known type, and `use` names a shared spec. */
static int spec_ok(const struct val *spec, char *where, size_t n) {
  const char *use = val_str(val_get(spec, "use"), NULL);
  if (use) {
    if (val_get(val_get(registry_kinds(), "shared"), use)) return 1;
    printf("  %s: unknown shared spec %s\n", where, use);
    return 0;
  }
  const char *type = val_str(val_get(spec, "type"), "any");
  int known = 0;
  for (size_t i = 0; i < countof(type_names); i++) known |= strcmp(type, type_names[i]) == 0;
  if (!known) { printf("  %s: unknown type %s\n", where, type); return 0; }
  if (val_get(spec, "items") && !spec_ok(val_get(spec, "items"), where, n)) return 0;
  if (val_get(spec, "values") && !spec_ok(val_get(spec, "values"), where, n)) return 0;
  return fields_ok(val_get(spec, "fields"), where);
}

TEST(kinds_description) {
  const struct val *k = registry_kinds();
  CHECK(k == registry_kinds());
  const struct val *kinds = val_get(k, "kinds");
  static const char *const must[] = {"process.lua", "function.lua", "library.lua", "process.host",
                                     "process.service", "terminal.host", "http.service",
                                     "http.router", "http.endpoint", "env.variable",
                                     "env.storage.os", "registry.entry"};
  for (size_t i = 0; i < countof(must); i++) CHECK(registry_kind_known(must[i]));
  CHECK(registry_kind_known("db.sql.sqlite"));
  CHECK(!registry_kind_known("template.jet"));
  for (size_t i = 0; i < val_len(kinds); i++) {
    const struct val *spec = val_at(kinds, i);
    CHECK(fields_ok(val_get(spec, "fields"), val_key_at(kinds, i)));
    CHECK(fields_ok(val_get(spec, "meta"), val_key_at(kinds, i)));
  }
  const struct val *sh = val_get(k, "shared");
  for (size_t i = 0; i < val_len(sh); i++) {
    char at[128];
    snprintf(at, sizeof at, "shared.%s", val_key_at(sh, i));
    CHECK(spec_ok(val_at(sh, i), at, sizeof at));
  }
  CHECK_STR(val_str(val_path(kinds, "process.lua.fields.method.default"), NULL), "main");
}

/* ---- hostile files: budgets, deep nesting, non-regular files ---- */

/* A throw-away project (returned, static) whose src/ holds `name` with `text` (NULL: a FIFO). */
static const char *tmp_project(const char *name, const char *text) {
  static char dir[64];
  char path[160];
  snprintf(dir, sizeof dir, "/tmp/th-reg-XXXXXX");
  if (!mkdtemp(dir)) return NULL;
  snprintf(path, sizeof path, "%s/src", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/src/%s", dir, name);
  if (!text) return mkfifo(path, 0644) == 0 ? dir : NULL;
  FILE *f = fopen(path, "w");
  if (!f) return NULL;
  fputs(text, f);
  fclose(f);
  return dir;
}

static void tmp_remove(const char *dir) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("  cannot remove %s\n", dir);
}

/* Loads a project of one file; 1 when the load fails with a diagnostic containing `msg`. */
static int refused_with(const char *name, const char *text, const char *msg, struct reg_opts *o) {
  const char *dir = tmp_project(name, text);
  if (!dir) return 0;
  char src[96];
  snprintf(src, sizeof src, "%s/src", dir);
  struct reg_opts plain = {dir, NULL, 0};
  if (o) o->project_dir = dir;
  struct registry *r = NULL;
  struct diag d;
  diag_init(&d);
  int ok = registry_load(src, o ? o : &plain, &r, &d) == -1 && diag_find(&d, msg);
  if (!ok) {
    printf("  %s: no \"%s\" in:\n", name, msg);
    for (size_t i = 0; i < d.n; i++) printf("    | %s\n", d.items[i]);
  }
  registry_unref(r);
  diag_free(&d);
  tmp_remove(dir);
  return ok;
}

#define RET_ENTRY "return {namespace = 'app', entries = {{name = 'a', kind = 'env.variable', meta = {t = t}}}}\n"

static const struct { const char *lua, *msg; } lua_budget_cases[] = {
  {"local t = {'x'} for i = 1, 40 do t = {t, t} end\n" RET_ENTRY,   /* 2^41 values as a tree */
   "src/x.registry.lua:2: entries[1].meta.t[1][1]"},
  {"local t = {'x'} for i = 1, 40 do t = {t, t} end\n" RET_ENTRY, "node budget exceeded"},
  {"local t = {} local c = t for i = 1, 80 do c[1] = {} c = c[1] end\n" RET_ENTRY, "depth budget exceeded"},
  {"local s, t = string.rep('x', 1 << 22), {} for i = 1, 20 do t[i] = s end\n" RET_ENTRY,
   "byte budget exceeded"},
  {"local t = {} for i = 1, 1e9 do t[i] = i end\n", "src/x.registry.lua:1: memory budget exceeded"},
  {"local n = 0\nwhile true do n = n + 1 end\n", "src/x.registry.lua:2: instruction budget exceeded"},
  {"while true do local s = string.rep('x', 1 << 20) end\n", "wall-time budget exceeded"},
  /* a pcall (or several, or xpcall with a spinning handler) catching the first error */
  {"while true do pcall(function() while true do end end) end\n", "instruction budget exceeded"},
  {"while true do pcall(pcall, xpcall, function() while true do end end, function() while true do end end) end\n",
   "instruction budget exceeded"},
  {"while true do pcall(function() local t = {} for i = 1, 1e9 do t[i] = i end end) end\n",
   "memory budget exceeded"},
  {"pcall(string.rep, 'xxxx', 1 << 25)\nlocal t = {}\n" RET_ENTRY, "memory budget exceeded"},
  {"setmetatable({}, {__gc = function() while true do end end})\nlocal t = {}\n" RET_ENTRY,
   "src/x.registry.lua:1: __gc metamethods are not allowed"},
  /* single C calls that would loop for ages without a hook or an allocation */
  {"local s = string.rep('a', 100000)\nlocal r = s:find('.-.-.-.-.-.-b')\n", "src/x.registry.lua:2: wall-time budget exceeded"},
  {"pcall(string.match, string.rep('a', 100000), '.-.-.-b')\nlocal t = {}\n" RET_ENTRY, "wall-time budget exceeded"},
  {"while true do pcall(string.match, string.rep('a', 100000), '.-.-.-b') end\n", "wall-time budget exceeded"},
  {"local r = string.find(string.rep('(', 1e6), '%b()x')\n", "wall-time budget exceeded"},
  /* a pattern that is fine on a long subject is not refused in advance any more */
  {"local s = string.rep(' x ', 2000)\nassert(s:match('^%s*(.-)%s*$'))\nlocal t = {}\nerror('done')\n", "src/x.registry.lua:4: done"},
  {"table.move({}, 1, math.maxinteger - 1, 1)\n", "call budget exceeded"},
  {"local s = string.rep('', 1e15)\n", "call budget exceeded"},
};

TEST(lua_budgets_hold_against_pcall) {
  for (size_t i = 0; i < countof(lua_budget_cases); i++)
    if (!refused_with("x.registry.lua", lua_budget_cases[i].lua, lua_budget_cases[i].msg, NULL))
      t_cur_failed = 1;
  /* the guarded functions still work within their budgets */
  const char *dir = tmp_project("x.registry.lua", "local t = {(('x'):rep(3, ',')):gsub('x', 'y')}\n"
                                "t[3] = ('k=v'):match('(%w+)=') .. select(2, ('a-b'):find('-', 1, true))\n"
                                "t = table.move(t, 1, 3, 2, {'z'})\n" RET_ENTRY);
  char src[96];
  snprintf(src, sizeof src, "%s/src", dir);
  struct reg_opts o = {dir, NULL, 0};
  struct registry *r = NULL;
  struct diag d;
  diag_init(&d);
  CHECK_INT(registry_load(src, &o, &r, &d), 0);
  dump(&d);
  const struct val *t = r ? val_path(registry_get(r, "app:a")->meta, "t") : NULL;
  CHECK_INT(val_len(t), 4);
  CHECK_STR(val_str(val_at(t, 1), NULL), "y,y,y");
  CHECK_INT(val_int(val_at(t, 2), 0), 3);
  CHECK_STR(val_str(val_at(t, 3), NULL), "k2");
  registry_unref(r);
  diag_free(&d);
  tmp_remove(dir);
}

static int stop_calls;
static int stop_second(void *ud) { (void)ud; return ++stop_calls > 1; }   /* load_all polls first */

TEST(lua_load_stops_when_asked) {
  struct reg_opts o = {.stop = stop_second};
  CHECK(refused_with("x.registry.lua", "local n = 0\nwhile true do n = n + 1 end\n",
                     "src/x.registry.lua:2: interrupted while loading", &o));
}

/* text = head + n copies of `open` + "1" + n copies of `close` + tail */
static char *nested(const char *head, const char *open, const char *close, const char *tail, int n) {
  struct buf b;
  buf_init(&b);
  buf_adds(&b, head);
  for (int i = 0; i < n; i++) buf_adds(&b, open);
  buf_adds(&b, "1");
  for (int i = 0; i < n; i++) buf_adds(&b, close);
  buf_adds(&b, tail);
  return buf_steal(&b);
}

TEST(deep_yaml_and_json_refused) {
  static const struct { const char *name, *head, *open, *close, *tail; } cases[] = {
    {"x.yaml", "namespace: app\nx: ", "[", "]", "\n"},
    {"x.yaml", "namespace: app\nx:\n", "- ", "", "\n"},
    {"x.json", "{\"namespace\": \"app\", \"x\": ", "{\"a\": ", "}", "}\n"},
  };
  for (size_t i = 0; i < countof(cases); i++) {
    char *text = nested(cases[i].head, cases[i].open, cases[i].close, cases[i].tail, 100000);
    if (!refused_with(cases[i].name, text, "depth budget exceeded", NULL)) t_cur_failed = 1;
    free(text);
  }
  /* a billion laughs: 10^9 values through nine levels of aliases */
  struct buf b;
  buf_init(&b);
  buf_adds(&b, "namespace: app\nl0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
  for (int i = 1; i <= 9; i++) {
    buf_printf(&b, "l%d: &l%d [", i, i);
    for (int k = 0; k < 10; k++) buf_printf(&b, "%s*l%d", k ? ", " : "", i - 1);
    buf_adds(&b, "]\n");
  }
  CHECK(refused_with("x.yaml", b.data, "node budget exceeded", NULL));
  buf_free(&b);
  CHECK(refused_with("x.yaml", "namespace: app\nx: &a [*a]\n", "src/x.yaml:2: alias *a is undefined", NULL));
}

TEST(non_regular_files_refused) {
  CHECK(refused_with("x.yaml", NULL, "src/x.yaml: refused: a FIFO, not a regular file", NULL));
  const char *dir = tmp_project("pipe.lua", NULL);   /* a FIFO as a file:// target */
  char path[128], src[96];
  snprintf(path, sizeof path, "%s/src/_index.yaml", dir);
  FILE *f = fopen(path, "w");
  fputs("version: \"1.0\"\nnamespace: app\nentries:\n  - name: f\n    kind: function.lua\n"
        "    source: file://pipe.lua\n    method: main\n", f);
  fclose(f);
  snprintf(src, sizeof src, "%s/src", dir);
  struct reg_opts o = {dir, NULL, 0};
  struct registry *r = NULL;
  struct diag d;
  diag_init(&d);
  CHECK_INT(registry_load(src, &o, &r, &d), -1);
  CHECK(diag_find(&d, "src/_index.yaml:6: file://pipe.lua: refused: a FIFO, not a regular file"));
  dump(&d);
  diag_free(&d);
  tmp_remove(dir);
}

static void no_ref(void *ud, const struct val *ref, const char *path, const struct val *allowed) {}

/* Found by fuzz_registry: an int field given a float beyond int64_t (an integer literal too
** long for it reads as a float) was cast to int64_t, undefined behaviour; now a type error. */
TEST(int_field_out_of_range) {
  static const char *const texts[] = {"capacity: 333333333333333333333333333333333\n",
                                      "capacity: 1e19\n", "capacity: .inf\n", "capacity: .nan\n"};
  for (size_t i = 0; i < countof(texts); i++) {
    int line;
    char err[256];
    struct reg_budget b;
    reg_budget_init(&b, NULL);
    struct val *data = reg_read_yaml(texts[i], strlen(texts[i]), "x.yaml", &b, &line, err, sizeof err);
    struct val *meta = val_new(V_MAP, NULL, 0);
    struct diag d;
    diag_init(&d);
    struct reg_check c = {&d, "app:q", "app", "x.yaml", 1, no_ref, NULL};
    CHECK(data && reg_check_entry(reg_kind_spec("queue.queue"), data, meta, &c) != 0);
    CHECK(diag_find(&d, "capacity"));
    dump(&d);
    diag_free(&d);
    val_free(data);
    val_free(meta);
  }
}

int main(void) {
  RUN(concurrent_generations);   /* first: races the one-time kinds parse */
  RUN(echo_service_loads);
  RUN(http_async_task_loads);
  RUN(features_files_and_forms);
  RUN(features_data_refs_defaults_meta);
  RUN(yaml_scalars_aliases_merge);
  RUN(env_placeholders);
  RUN(overrides);
  RUN(parse_override_edges);
  RUN(broken_yaml_syntax);
  RUN(broken_file_refs);
  RUN(broken_references);
  RUN(broken_types);
  RUN(broken_entries);
  RUN(broken_lua_files);
  RUN(generations_and_refcount);
  RUN(kinds_description);
  RUN(lua_budgets_hold_against_pcall);
  RUN(lua_load_stops_when_asked);
  RUN(deep_yaml_and_json_refused);
  RUN(non_regular_files_refused);
  RUN(int_field_out_of_range);
  return T_DONE();
}
