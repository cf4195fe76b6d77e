/*
** main.c — the taskhost command line: run / check / init / version / help.
** Exit codes: 0 success; 1 the -x process failed or returned false/non-zero (its own code);
** 2 usage error; 3 project or registry errors (every problem printed as file:line: message);
** 130 interrupted during -x, or by SIGINT/SIGTERM while the project loads.
** Singletons are set up here in order (log, then the app's runtime) and torn down in reverse.
*/
#include "app/app.h"
#include "base/watch.h"
#include "registry/code.h"
#include "base/log.h"
#include "registry/project.h"
#include "registry/registry.h"
#include "http/router.h"
#include "http/http.h"
#include "http/httpc.h"
#include "db/db.h"
#include "lua/lmod_crypto.h"
#include "lua/stubs.h"
#include "value/json.h"
#include "base/thstack.h"
#include "base/util.h"

#include <lua.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_CONFIG 3
#define EXIT_INTERRUPTED 130

struct cli {
  const char *argv0;       /* as invoked: hints print a command that works as typed */
  const char *cmd;
  const char *dir;
  const char *exec;
  char **args;
  int nargs;
  struct reg_override *overrides;
  char **override_storage;
  size_t noverrides;
  const char *log_level;
  const char *log_format;
  int help;
  int no_watch;
  const char *admin;       /* --admin ADDR: replaces taskhost.yaml's admin.addr */
  const char *template_;   /* init --template NAME */
  int stubs_readme;        /* stubs --readme */
  int stubs_list;          /* stubs --list */
};

static const char usage_text[] =
  "taskhost " TASKHOST_VERSION " - a Lua-scriptable task host\n"
  "\n"
  "usage:\n"
  "  taskhost run [DIR] [options] [-x [HOST/]ENTRY [ARGS...]]\n"
  "  taskhost check [DIR] [-o ns:entry:field=value]...\n"
  "  taskhost init [DIR] [-t hello|http|jobs]\n"
  "  taskhost stubs DIR | --readme | --list\n"
  "  taskhost version\n"
  "  taskhost help\n"
  "\n"
  "run      load the project in DIR (default .), start its hosts and auto_start services and\n"
  "         serve until SIGINT/SIGTERM; with -x, run ENTRY on a terminal host and exit with\n"
  "         its code when it returns\n"
  "check    load and validate every registry file, compile every Lua chunk, print each\n"
  "         problem as file:line: message; exit 3 if there is any error\n"
  "init     write wippy.lock and a runnable app into DIR: hello (a terminal process, the\n"
  "         default), http (a JSON endpoint on :8080) or jobs (a queue, a consumer and the\n"
  "         job API on :8080); files already there are kept; also the editor stubs in\n"
  "         DIR/.taskhost/stubs and a .luarc.json naming them (an existing one is kept)\n"
  "stubs    write lua-language-server annotation files (---@meta) of every host module and\n"
  "         global into DIR; --readme prints README's module table, --list every declared\n"
  "         name, both from the same description\n"
  "version  print taskhost's version, then each linked library's as 'name version'\n"
  "\n"
  "options:\n"
  "  -x, --exec [HOST/]ENTRY    run ENTRY (a process.lua) on terminal host HOST (optional when\n"
  "                             there is one); the remaining arguments are passed to it\n"
  "  -o, --override ID:FIELD=VALUE\n"
  "                             override an entry field at load, e.g. -o app:gateway:addr=127.0.0.1:0\n"
  "                             (nested fields with dots; meta.X for meta); repeatable\n"
  "  -l, --log-level LEVEL      debug, info, warn or error (default: info or taskhost.yaml)\n"
  "      --log-format FORMAT    console or json\n"
  "      --no-watch             do not reload when source files change (SIGHUP still does)\n"
  "      --admin ADDR           serve the admin listener (GET /metrics) on ADDR, e.g.\n"
  "                             127.0.0.1:9090 (replaces taskhost.yaml's admin.addr)\n"
  "  -t, --template NAME        init: hello, http or jobs (default hello)\n"
  "      --readme, --list       stubs: print the module table or the names instead\n"
  "  -h, --help                 this text\n"
  "\n"
  "The source directory is directories.src of DIR/wippy.lock, else DIR/src. Logs go to\n"
  "stderr; stdout belongs to the terminal process.\n"
  "exit codes: 0 ok, 1 the -x process failed, 2 usage error, 3 project/registry errors,\n"
  "130 interrupted\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "taskhost: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nrun 'taskhost --help' for usage\n");
  return EXIT_USAGE;
}

static int add_override(struct cli *c, const char *spec) {
  c->overrides = xrealloc(c->overrides, (c->noverrides + 1) * sizeof *c->overrides);
  c->override_storage = xrealloc(c->override_storage, (c->noverrides + 1) * sizeof(char *));
  if (registry_parse_override(spec, &c->overrides[c->noverrides], &c->override_storage[c->noverrides]) != 0)
    return -1;
  c->noverrides++;
  return 0;
}

/* Option value: "--opt=v" or the next argument. */
static const char *opt_value(int argc, char **argv, int *i, const char *arg) {
  const char *eq = strchr(arg, '=');
  if (arg[1] == '-' && eq) return eq + 1;
  return *i + 1 < argc ? argv[++*i] : NULL;
}

static int is_opt(const char *arg, const char *s, const char *l) {
  size_t n = strlen(l);
  return strcmp(arg, s) == 0 || strcmp(arg, l) == 0 || (strncmp(arg, l, n) == 0 && arg[n] == '=');
}

static int parse_args(int argc, char **argv, struct cli *c) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (is_opt(a, "-h", "--help")) { c->help = 1; continue; }
    if (is_opt(a, "-x", "--exec")) {
      if (!(c->exec = opt_value(argc, argv, &i, a))) return usage_error("%s needs [HOST/]ENTRY", a);
      c->args = argv + i + 1;
      c->nargs = argc - i - 1;
      return 0;
    }
    if (is_opt(a, "-o", "--override")) {
      const char *v = opt_value(argc, argv, &i, a);
      if (!v || add_override(c, v) != 0) return usage_error("bad override '%s' (want ns:entry:field=value)", v ? v : "");
      continue;
    }
    if (is_opt(a, "-l", "--log-level")) {
      if (!(c->log_level = opt_value(argc, argv, &i, a))) return usage_error("%s needs a level", a);
      continue;
    }
    if (strcmp(a, "--no-watch") == 0) { c->no_watch = 1; continue; }
    if (strcmp(a, "--readme") == 0) { c->stubs_readme = 1; continue; }
    if (strcmp(a, "--list") == 0) { c->stubs_list = 1; continue; }
    if (is_opt(a, "--admin", "--admin")) {
      if (!(c->admin = opt_value(argc, argv, &i, a)) || !*c->admin) return usage_error("%s needs HOST:PORT", a);
      continue;
    }
    if (is_opt(a, "-t", "--template")) {
      if (!(c->template_ = opt_value(argc, argv, &i, a))) return usage_error("%s needs a template name: hello, http or jobs", a);
      continue;
    }
    if (is_opt(a, "--log-format", "--log-format")) {
      if (!(c->log_format = opt_value(argc, argv, &i, a))) return usage_error("%s needs a format", a);
      continue;
    }
    if (a[0] == '-') return usage_error("unknown option '%s'", a);
    if (!c->cmd) c->cmd = a;
    else if (!c->dir) c->dir = a;
    else return usage_error("unexpected argument '%s'", a);
  }
  return 0;
}

static int setup_logging(const struct cli *c, const struct project *p) {
  enum log_level lv = p ? p->log_level : LOG_INFO;
  if (c->log_level && log_level_parse(c->log_level, &lv) != 0)
    return usage_error("unknown log level '%s'", c->log_level);
  int json = p ? p->log_json : 0;
  if (c->log_format) json = strcmp(c->log_format, "json") == 0;
  log_init(lv, json);
  return 0;
}

static void print_diag(const struct diag *d, FILE *f) {
  for (size_t i = 0; i < d->n; i++) fprintf(f, "%s\n", d->items[i]);
}

static volatile sig_atomic_t check_signalled;   /* check: the first SIGINT/SIGTERM */

/* A SIGINT or SIGTERM came (check: caught by on_check_signal; run: blocked in every thread,
** so pending): a load in progress stops at its next poll, then check exits 130 and run
** exits 130 (first load) or shuts down (a reload). */
static int stop_pending(void *ud) {
  sigset_t set;
  (void)ud;
  if (check_signalled) return 1;
  return sigpending(&set) == 0 && (sigismember(&set, SIGINT) == 1 || sigismember(&set, SIGTERM) == 1);
}

/* check: the first signal stops the load (stop_pending), a second one exits at once. */
static void on_check_signal(int sig) {
  if (check_signalled) _exit(EXIT_INTERRUPTED);
  check_signalled = sig;
}

/* Loads registry + code. Returns 0, or EXIT_CONFIG with problems printed to f. */
static int load_project(const struct cli *c, const struct project *p, FILE *f,
                        struct registry **reg, struct codeset **code) {
  struct reg_opts o = {.project_dir = p->dir, .overrides = c->overrides, .n_overrides = c->noverrides,
                       .stop = stop_pending};
  struct diag d;
  diag_init(&d);
  int rc = registry_load(p->src, &o, reg, &d);
  if (rc == 0) {
    *code = codeset_build(*reg, p->dir, &d);
    if (!*code || routes_check_all(*reg, &d) != 0) {
      rc = -1;
      if (*code) codeset_unref(*code);
      *code = NULL;
      registry_unref(*reg);
      *reg = NULL;
    }
  }
  print_diag(&d, f);
  if (rc != 0) fprintf(f, "taskhost: %d error%s, %d warning%s\n", d.errors, d.errors == 1 ? "" : "s",
                       d.warnings, d.warnings == 1 ? "" : "s");
  diag_free(&d);
  return rc == 0 ? 0 : EXIT_CONFIG;
}

typedef int (*project_fn)(struct cli *c, struct project *p, struct registry *reg,
                          struct codeset *code);

/* Opens the project, sets up logging, loads registry and code (problems printed to
** `problems`), runs fn, and releases everything. */
static int with_project(struct cli *c, FILE *problems, project_fn fn) {
  struct project p;
  char err[512];
  if (project_open(c->dir, &p, err, sizeof err) != 0) {
    fprintf(stderr, "taskhost: %s\n", err);
    return EXIT_CONFIG;
  }
  int rc = setup_logging(c, &p);
  struct registry *reg = NULL;
  struct codeset *code = NULL;
  if (rc == 0 && (rc = load_project(c, &p, problems, &reg, &code)) == 0 && !stop_pending(NULL))
    rc = fn(c, &p, reg, code);
  else if (rc != EXIT_USAGE && stop_pending(NULL))
    rc = EXIT_INTERRUPTED;   /* a signal during the load: it stopped, or it is over anyway */
  codeset_unref(code);
  registry_unref(reg);
  project_close(&p);
  return rc;
}

static int report_ok(struct cli *c, struct project *p, struct registry *reg, struct codeset *code) {
  printf("ok: %zu entries, every Lua chunk compiles\n", registry_count(reg));
  return 0;
}

struct reload_ctx { const struct cli *c; const struct project *p; };

/* Hot reload: the same load as at start (overrides included); problems go to the log. */
static int reload_project(void *ctx, struct registry **reg, struct codeset **code, char **problems) {
  struct reload_ctx *rc = ctx;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return -1;
  int rc_load = load_project(rc->c, rc->p, f, reg, code);
  fclose(f);
  if (rc_load != 0 && text) {                /* before strtok cuts it; without the count line */
    *problems = xstrdup(text);
    char *last = strstr(*problems, "taskhost: "), *next;
    while (last && (next = strstr(last + 1, "\ntaskhost: "))) last = next + 1;
    if (last && (last == *problems || last[-1] == '\n') && strstr(last, " error")) *last = '\0';
  }
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) log_error("%s", line);
  free(text);
  return rc_load == 0 ? 0 : -1;
}

static int run_app(struct cli *c, struct project *p, struct registry *reg, struct codeset *code) {
  if (c->admin) { free(p->admin_addr); p->admin_addr = xstrdup(c->admin); }
  struct app *a = app_new(p, reg, code);
  struct reload_ctx rctx = {c, p};
  struct watch *w = NULL;
  if (!c->exec && !c->no_watch) {
    char err[512];
    if (!(w = watch_start(p->src, 30 * NS_PER_MS, err, sizeof err))) log_warn("%s (no hot reload)", err);
  }
  app_set_reloader(a, reload_project, &rctx, w);
  char *host = NULL, *entry = NULL, err[512];
  int rc = 0;
  if (c->exec && app_exec_target(a, c->exec, &host, &entry, err, sizeof err) != 0) {
    fprintf(stderr, "taskhost: %s\n", err);
    app_free(a);
    free(host);
    free(entry);
    return EXIT_USAGE;
  }
  if (app_start(a, host) != 0) rc = EXIT_CONFIG;
  else if (c->exec && app_exec(a, host, entry, c->args, c->nargs, err, sizeof err) != 0) {
    fprintf(stderr, "taskhost: %s\n", err);
    rc = EXIT_USAGE;
  } else {
    log_info("taskhost %s running %s (%zu entries)", TASKHOST_VERSION, p->src, registry_count(reg));
    rc = app_wait(a);
  }
  watch_stop(w);
  app_stop(a);
  app_free(a);
  free(host);
  free(entry);
  return rc;
}

static int cmd_check(struct cli *c) {
  struct sigaction sa = {.sa_handler = on_check_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  return with_project(c, stdout, report_ok);
}

static int cmd_run(struct cli *c) { return with_project(c, stderr, run_app); }

/* A word as a POSIX shell reads it back: as is when it is plain, else in single quotes. */
static void print_shell_word(FILE *f, const char *w) {
  if (*w && strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:+-=@%,") == strlen(w)) {
    fputs(w, f);
    return;
  }
  fputc('\'', f);
  for (; *w; w++) w[0] == '\'' ? fputs("'\\''", f) : fputc(*w, f);
  fputc('\'', f);
}

/* init: the stubs in DIR/.taskhost/stubs (rewritten: they follow the binary) and a
** DIR/.luarc.json naming them by a path relative to DIR (kept when there is one). */
static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = xmalloc(n);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static int init_editor(const char *dir, char *err, size_t errlen) {
  char *stubs = path_join(dir, ".taskhost/stubs"), *luarc = path_join(dir, ".luarc.json");
  int rc = stubs_write(stubs, err, errlen) < 0 ? -1 : stubs_write_luarc(luarc, ".taskhost/stubs", err, errlen);
  if (rc == 1) fprintf(stderr, "taskhost: %s exists, kept\n", luarc);
  free(stubs);
  free(luarc);
  return rc < 0 ? -1 : 0;
}

static int cmd_init(struct cli *c) {
  /* What to try after each template: run arguments, then a request to make. */
  static const struct { const char *name, *run_args, *then; } hints[] = {
    {"hello", " -x hello", ""},
    {"http", "", "   and   curl 'http://127.0.0.1:8080/api/hello?name=you'"},
    {"jobs", "", "   and   curl -d '{\"n\": 1}' http://127.0.0.1:8080/jobs"}};
  const char *name = c->template_ ? c->template_ : "hello";
  size_t h = 0;
  while (h < countof(hints) && strcmp(hints[h].name, name) != 0) h++;
  if (h == countof(hints)) return usage_error("unknown template '%s' (templates: hello, http, jobs)", name);
  char err[512];
  const char *dir = c->dir ? c->dir : ".";
  if (project_init(dir, name, err, sizeof err) != 0 || init_editor(dir, err, sizeof err) != 0) {
    fprintf(stderr, "taskhost: %s\n", err);
    return 1;
  }
  printf("initialised %s (%s): try  ", dir, name);
  print_shell_word(stdout, strchr(c->argv0, '/') ? c->argv0 : "taskhost");
  fputs(" run ", stdout);
  print_shell_word(stdout, dir);
  printf("%s%s\n", hints[h].run_args, hints[h].then);
  return 0;
}

static int cmd_help(struct cli *c) { fputs(usage_text, stdout); return 0; }

/* stubs DIR: 0 written, 1 cannot write; --readme / --list print instead (no DIR). */
static int cmd_stubs(struct cli *c) {
  char err[512];
  if (c->stubs_readme + c->stubs_list + (c->dir != NULL) != 1)
    return usage_error("%s", "stubs takes one of DIR, --readme or --list");
  if (c->dir) {
    int n = stubs_write(c->dir, err, sizeof err);
    if (n < 0) { fprintf(stderr, "taskhost: %s\n", err); return 1; }
    printf("wrote %d stub files to %s\n", n, c->dir);
    return 0;
  }
  if (stubs_print(stdout, c->stubs_readme ? STUBS_README : STUBS_LIST, err, sizeof err) != 0) {
    fprintf(stderr, "taskhost: %s\n", err);
    return 1;
  }
  return 0;
}

/* Lua has no run-time call for its release ("5.4.4"), only lua_version()'s 504: the headers'. */
static int lua_release(char *buf, size_t n) {
  snprintf(buf, n, "%s", strncmp(LUA_RELEASE, "Lua ", 4) == 0 ? LUA_RELEASE + 4 : LUA_RELEASE);
  return 0;
}

/* `taskhost version`: the first line is "taskhost X.Y.Z", then one "name version" line per
** library taskhost links, asked of the library itself at run time where it can say (each
** layer that uses a library offers its version). A library that cannot say prints
** "name <unknown>" instead, and lua-cjson, linked statically, "lua-cjson (static)". */
static const struct libversion {
  const char *name;
  int (*get)(char *buf, size_t n);   /* 0 with the version in buf, or -1 */
  const char *unknown;
} libversions[] = {
  {"lua", lua_release, "<unknown>"},
  {"lua-cjson", json_cjson_version, "(static)"},
  {"libyaml", registry_yaml_version, "<unknown>"},
  {"civetweb", http_civetweb_version, "<unknown>"},
  {"libcurl", httpc_curl_version, "<unknown>"},
  {"sqlite", db_sqlite_version, "<unknown>"},
  {"libpq", db_pg_version, "<unknown>"},
  {"openssl", crypto_openssl_version, "<unknown>"},
};

static int cmd_version(struct cli *c) {
  printf("taskhost %s\n", TASKHOST_VERSION);
  for (size_t i = 0; i < countof(libversions); i++) {
    char v[128];
    int ok = libversions[i].get(v, sizeof v) == 0 && v[0];
    printf("%s %s\n", libversions[i].name, ok ? v : libversions[i].unknown);
  }
  return 0;
}

static void block_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);     /* every thread inherits it; app_wait takes them */
  signal(SIGPIPE, SIG_IGN);
}

static int cmd_run_blocking_signals(struct cli *c) {
  block_signals();
  return cmd_run(c);
}

static const struct command {
  const char *name;
  int (*fn)(struct cli *);
} commands[] = {
  {"run", cmd_run_blocking_signals}, {"check", cmd_check}, {"init", cmd_init},
  {"version", cmd_version}, {"help", cmd_help}, {"stubs", cmd_stubs},
};

static int dispatch(struct cli *c) {
  const char *name = c->help || !c->cmd ? "help" : c->cmd;
  for (size_t i = 0; i < countof(commands); i++)
    if (strcmp(commands[i].name, name) == 0) return commands[i].fn(c);
  return usage_error("unknown command '%s'", name);
}

int main(int argc, char **argv) {
  thstack_main();               /* registry files and function states boot on this thread */
  struct cli c = {.argv0 = argv[0]};
  int rc = parse_args(argc, argv, &c);
  if (rc == 0) rc = dispatch(&c);
  for (size_t i = 0; i < c.noverrides; i++) free(c.override_storage[i]);
  free(c.overrides);
  free(c.override_storage);
  log_exit();
  return rc;
}
