/*
** project.c — see project.h. Uses the registry's YAML reader (libyaml) for both files.
*/
#include "project.h"
#include "reg_internal.h"
#include "base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Default Lua heap limit of every state (process, function pool state, consumer state):
** a state needs tens of KB, a busy handler a few MB, so 256 MiB never stops sane code,
** while a runaway allocation loop gets "not enough memory" long before it can exhaust the
** machine (the limit is per state, not a budget for the host). */
#define DEFAULT_LUA_HEAP ((uint64_t)256 << 20)

static char *join(const char *a, const char *b) {
  struct buf x;
  buf_init(&x);
  if (b[0] == '/') buf_adds(&x, b);
  else {
    while (b[0] == '.' && b[1] == '/') b += 2;
    buf_printf(&x, "%s/%s", a, b);
  }
  while (x.len > 1 && x.data[x.len - 1] == '/') x.data[--x.len] = '\0';
  return buf_steal(&x);
}

/* Reads a YAML file into a tree; NULL with *missing set when absent, or an error. */
static struct val *read_yaml(const char *path, int *missing, char *err, size_t errlen) {
  size_t len;
  struct stat st;
  char why[200];
  *missing = lstat(path, &st) != 0 && errno == ENOENT;
  char *text = *missing ? NULL : reg_file_read(path, &len, why, sizeof why);  /* no FIFO hangs */
  if (!text) {
    if (!*missing) snprintf(err, errlen, "%s: %s", path, why);
    return NULL;
  }
  int line = 0;
  char msg[256];
  struct reg_budget b;
  reg_budget_init(&b, NULL);
  struct val *v = reg_read_yaml(text, len, path, &b, &line, msg, sizeof msg);
  free(text);
  if (!v) snprintf(err, errlen, "%s:%d: %s", path, line, msg);
  return v;
}

/* A positive integer setting: its key under the section, and its largest value (0: none). */
struct int_key { const char *key; long max; };

/* section.keys[i] → *dst[i], integers from 1 to keys[i].max (http_client:, metrics:, funcs:,
** log.clickhouse:); an absent key leaves *dst[i] as it is. 0, or -1 with file:line in err. */
static int read_ints(const struct val *v, const char *path, const char *section, const struct int_key *keys,
                     long *const *dst, size_t n, char *err, size_t errlen) {
  for (size_t i = 0; i < n; i++) {
    char key[64];
    snprintf(key, sizeof key, "%s.%s", section, keys[i].key);
    const struct val *x = val_path(v, key);
    if (!x) continue;
    if (x->type != V_INT || x->u.i <= 0 || (keys[i].max && x->u.i > keys[i].max)) {
      if (keys[i].max) snprintf(err, errlen, "%s:%d: %s must be an integer from 1 to %ld", path, x->line, key, keys[i].max);
      else snprintf(err, errlen, "%s:%d: %s must be a positive integer", path, x->line, key);
      return -1;
    }
    *dst[i] = (long)x->u.i;
  }
  return 0;
}

/* http_client: {max_connections_per_host, max_connections, max_in_flight}. */
static int read_http_client(const struct val *v, const char *path, struct project *p, char *err, size_t errlen) {
  static const struct int_key keys[] = {{"max_connections_per_host", 0}, {"max_connections", 0}, {"max_in_flight", 0}};
  long *const dst[] = {&p->http_max_connections_per_host, &p->http_max_connections, &p->http_max_in_flight};
  return read_ints(v, path, "http_client", keys, dst, countof(keys), err, errlen);
}

/* metrics: {max_names, max_series_per_metric, max_series}: the cardinality budgets. */
static int read_metrics(const struct val *v, const char *path, struct project *p, char *err, size_t errlen) {
  static const struct int_key keys[] = {{"max_names", 0}, {"max_series_per_metric", 0}, {"max_series", 0}};
  long *const dst[] = {&p->metrics_max_names, &p->metrics_max_series_per_metric, &p->metrics_max_series};
  return read_ints(v, path, "metrics", keys, dst, countof(keys), err, errlen);
}

/* admin: {addr, token}, non-empty strings (main's --admin replaces addr). */
static int read_admin(const struct val *v, const char *path, struct project *p, char *err, size_t errlen) {
  static const char *const keys[] = {"admin.addr", "admin.token"};
  char **dst[] = {&p->admin_addr, &p->admin_token};
  const struct val *a = val_path(v, "admin");
  if (a && a->type != V_MAP) {
    snprintf(err, errlen, "%s:%d: admin must be a mapping {addr, token}", path, a->line);
    return -1;
  }
  for (size_t i = 0; i < countof(keys); i++) {
    const struct val *x = val_path(v, keys[i]);
    if (!x) continue;
    if (x->type != V_STR || !*val_str(x, "")) {
      snprintf(err, errlen, "%s:%d: %s must be a non-empty string", path, x->line, keys[i]);
      return -1;
    }
    *dst[i] = xstrdup(val_str(x, ""));
  }
  return 0;
}

/* funcs: {max_threads (1..1024), max_queue (1..1000000)}; 0 left = the engine's defaults. */
static int read_funcs(const struct val *v, const char *path, struct project *p, char *err, size_t errlen) {
  static const struct int_key keys[] = {{"max_threads", 1024}, {"max_queue", 1000000}};
  long *const dst[] = {&p->funcs_max_threads, &p->funcs_max_queue};
  return read_ints(v, path, "funcs", keys, dst, countof(keys), err, errlen);
}

/* A ClickHouse identifier we put into SQL unquoted: [A-Za-z_][A-Za-z0-9_]*, at most 64. */
static int is_ident(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64 || (s[0] >= '0' && s[0] <= '9')) return 0;
  return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

/* log.clickhouse: {url, database, table, user, password, batch_size, batch_interval,
** connection_attempts, try_connection_period, buffer, level}. */
static int read_clickhouse(const struct val *v, const char *path, struct project *p, char *err, size_t errlen) {
  const struct val *ch = val_path(v, "log.clickhouse");
  if (!ch) return 0;
  struct log_clickhouse *c = &p->clickhouse;
  if (ch->type != V_MAP) {
    snprintf(err, errlen, "%s:%d: log.clickhouse must be a mapping {url, table, ...}", path, ch->line);
    return -1;
  }
  static const struct { const char *key; int ident; } strs[] = {
    {"url", 0}, {"database", 1}, {"table", 1}, {"user", 0}, {"password", 0}};
  char **sdst[] = {&c->url, &c->database, &c->table, &c->user, &c->password};
  for (size_t i = 0; i < countof(strs); i++) {
    const struct val *x = val_get(ch, strs[i].key);
    if (!x) continue;
    if (x->type != V_STR || (i < 3 && !*val_str(x, ""))) {
      snprintf(err, errlen, "%s:%d: log.clickhouse.%s must be a%s string", path, x->line, strs[i].key, i < 3 ? " non-empty" : "");
      return -1;
    }
    if (strs[i].ident && !is_ident(val_str(x, ""))) {
      snprintf(err, errlen, "%s:%d: log.clickhouse.%s must be a name of letters, digits and _", path, x->line, strs[i].key);
      return -1;
    }
    *sdst[i] = xstrdup(val_str(x, ""));
  }
  if (!c->url) {
    snprintf(err, errlen, "%s:%d: log.clickhouse.url is required (e.g. http://127.0.0.1:8123)", path, ch->line);
    return -1;
  }
  if (strncmp(c->url, "http://", 7) != 0 && strncmp(c->url, "https://", 8) != 0) {
    snprintf(err, errlen, "%s:%d: log.clickhouse.url must be an http:// or https:// URL", path, val_get(ch, "url")->line);
    return -1;
  }
  static const struct int_key ints[] = {{"batch_size", 100000}, {"connection_attempts", 1000}, {"buffer", 10000000}};
  long *const idst[] = {&c->batch_size, &c->connection_attempts, &c->buffer};
  if (read_ints(v, path, "log.clickhouse", ints, idst, countof(ints), err, errlen) != 0) return -1;
  static const char *const durs[] = {"batch_interval", "try_connection_period"};
  int64_t *ddst[] = {&c->batch_interval, &c->try_connection_period};
  for (size_t i = 0; i < countof(durs); i++) {
    const struct val *x = val_get(ch, durs[i]);
    if (!x) continue;
    const char *t = x->type == V_STR ? val_str(x, "") : NULL;
    if (!t || duration_parse(t, ddst[i]) != 0 || *ddst[i] <= 0 || *ddst[i] > 3600 * NS_PER_S) {
      snprintf(err, errlen, "%s:%d: log.clickhouse.%s must be a duration from 1ms to 1h (\"500ms\", \"2s\")", path, x->line, durs[i]);
      return -1;
    }
  }
  const struct val *lv = val_get(ch, "level");
  if (lv) {
    if (lv->type != V_STR || log_level_parse(val_str(lv, ""), &c->level) != 0) {
      snprintf(err, errlen, "%s:%d: log.clickhouse.level: unknown log level", path, lv->line);
      return -1;
    }
    c->level_set = 1;
  }
  return 0;
}

static int read_settings(struct project *p, char *err, size_t errlen) {
  char *path = join(p->dir, "taskhost.yaml");
  int missing;
  struct val *v = read_yaml(path, &missing, err, errlen);
  int rc = 0;
  if (v) {
    const char *lv = val_str(val_path(v, "log.level"), NULL);
    if (lv && log_level_parse(lv, &p->log_level) != 0) {
      snprintf(err, errlen, "%s:%d: unknown log level '%s'", path, val_path(v, "log.level")->line, lv);
      rc = -1;
    }
    p->log_json = strcmp(val_str(val_path(v, "log.format"), "console"), "json") == 0;
    const char *st = val_str(val_path(v, "shutdown.timeout"), NULL);
    if (st && duration_parse(st, &p->shutdown_timeout) != 0) {
      snprintf(err, errlen, "%s: shutdown.timeout: invalid duration '%s'", path, st);
      rc = -1;
    }
    const struct val *mem = val_path(v, "limits.process_memory");
    if (mem) {
      char num[32];
      const char *text = mem->type == V_INT ? (snprintf(num, sizeof num, "%lld", (long long)mem->u.i), num)
                                            : val_str(mem, "");
      if (size_parse(text, &p->process_memory) != 0) {
        snprintf(err, errlen, "%s:%d: limits.process_memory: invalid size '%s'", path, mem->line, text);
        rc = -1;
      }
    }
    if (read_http_client(v, path, p, err, errlen) != 0) rc = -1;
    if (read_admin(v, path, p, err, errlen) != 0) rc = -1;
    if (read_metrics(v, path, p, err, errlen) != 0) rc = -1;
    if (read_funcs(v, path, p, err, errlen) != 0) rc = -1;
    if (rc == 0 && read_clickhouse(v, path, p, err, errlen) != 0) rc = -1;
    val_free(v);
  } else if (!missing) rc = -1;
  free(path);
  return rc;
}

int project_open(const char *dir, struct project *p, char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  p->dir = xstrdup(dir && *dir ? dir : ".");
  p->log_level = LOG_INFO;
  p->shutdown_timeout = 10 * NS_PER_S;
  p->process_memory = DEFAULT_LUA_HEAP;
  char *lock = join(p->dir, "wippy.lock");
  int missing;
  struct val *v = read_yaml(lock, &missing, err, errlen);
  free(lock);
  if (!v && !missing) { project_close(p); return -1; }
  p->src = join(p->dir, val_str(val_path(v, "directories.src"), "src"));
  val_free(v);
  struct stat st;
  if (stat(p->src, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: source directory not found (set directories.src in wippy.lock)", p->src);
    project_close(p);
    return -1;
  }
  if (read_settings(p, err, errlen) != 0) { project_close(p); return -1; }
  return 0;
}

void project_close(struct project *p) {
  free(p->dir);
  free(p->src);
  free(p->admin_addr);
  free(p->admin_token);
  struct log_clickhouse *c = &p->clickhouse;
  free(c->url); free(c->database); free(c->table); free(c->user); free(c->password);
  memset(p, 0, sizeof *p);
}

struct scaffold_file { const char *name; const char *text; };

static const char LOCK[] = "directories:\n  modules: .wippy\n  src: ./src\n";

static const struct scaffold_file hello_files[] = {
  {"wippy.lock", LOCK},
  {"src/_index.yaml",
   "version: \"1.0\"\nnamespace: app\n\nentries:\n"
   "  - name: terminal\n    kind: terminal.host\n    lifecycle:\n      auto_start: true\n\n"
   "  - name: processes\n    kind: process.host\n    lifecycle:\n      auto_start: true\n\n"
   "  - name: hello\n    kind: process.lua\n    source: file://hello.lua\n    method: main\n"
   "    modules: [io, time]\n"},
  {"src/hello.lua",
   "local io = require(\"io\")\n\nlocal function main(name)\n"
   "  io.print(\"hello, \" .. (name or \"world\"))\n  return 0\nend\n\nreturn { main = main }\n"},
  {NULL, NULL}};

/* An HTTP service on :8080 with one JSON endpoint, GET /api/hello?name=. */
static const struct scaffold_file http_files[] = {
  {"wippy.lock", LOCK},
  {"src/_index.yaml",
   "version: \"1.0\"\nnamespace: app\n\nentries:\n"
   "  - name: processes\n    kind: process.host\n    lifecycle:\n      auto_start: true\n\n"
   "  - name: gateway\n    kind: http.service\n    addr: \":8080\"\n    lifecycle:\n      auto_start: true\n\n"
   "  - name: api\n    kind: http.router\n    meta:\n      server: gateway\n    prefix: /api\n\n"
   "  - name: hello\n    kind: function.lua\n    source: file://hello.lua\n    method: handler\n"
   "    modules: [http]\n\n"
   "  - name: hello.endpoint\n    kind: http.endpoint\n    meta:\n      router: api\n"
   "    method: GET\n    path: /hello\n    func: hello\n"},
  {"src/hello.lua",
   "-- GET /api/hello?name=you -> {\"hello\": \"you\"}\nlocal http = require(\"http\")\n\n"
   "local function handler()\n  local req, res = http.request(), http.response()\n"
   "  local name = req:query(\"name\") or \"world\"\n"
   "  return res:write_json({ hello = name })\nend\n\nreturn { handler = handler }\n"},
  {NULL, NULL}};

/* A durable queue (SQLite, in data/) with a consumer and the job API on :8080 at /jobs. */
static const struct scaffold_file jobs_files[] = {
  {"wippy.lock", LOCK},
  {"src/_index.yaml",
   "version: \"1.0\"\nnamespace: app\n\nentries:\n"
   "  - name: processes\n    kind: process.host\n    lifecycle:\n      auto_start: true\n\n"
   "  - name: jobs\n    kind: queue.queue\n    max_retries: 3\n    timeout: 30s\n\n"
   "  - name: work\n    kind: function.lua\n    source: file://work.lua\n    method: run\n"
   "    modules: [logger, time]\n\n"
   "  - name: consumer\n    kind: queue.consumer\n    queue: app:jobs\n    func: app:work\n"
   "    concurrency: 4\n    lifecycle:\n      auto_start: true\n\n"
   "  - name: gateway\n    kind: http.service\n    addr: \":8080\"\n    lifecycle:\n      auto_start: true\n\n"
   "  - name: root\n    kind: http.router\n    meta:\n      server: gateway\n    prefix: /\n\n"
   "  - name: jobs.api\n    kind: queue.http\n    meta:\n      router: app:root\n    queue: app:jobs\n"
   "    path: /jobs\n    health_path: /healthz\n"},
  {"src/work.lua",
   "-- One job: its data is the JSON body POSTed to /jobs; the return value is its result\n"
   "-- (GET /jobs/ID); an error retries it, up to max_retries.\n"
   "local logger = require(\"logger\")\n\nlocal function run(job)\n"
   "  logger:info(\"job\", { data = job })\n"
   "  return { ok = true, got = job }\nend\n\nreturn { run = run }\n"},
  {NULL, NULL}};

static const struct { const char *name; const struct scaffold_file *files; } templates[] = {
  {"hello", hello_files}, {"http", http_files}, {"jobs", jobs_files}};

int project_init(const char *dir, const char *template, char *err, size_t errlen) {
  const struct scaffold_file *scaffold = NULL;
  for (size_t i = 0; i < countof(templates); i++)
    if (strcmp(templates[i].name, template ? template : "hello") == 0) scaffold = templates[i].files;
  if (!scaffold) {
    snprintf(err, errlen, "unknown template '%s' (templates: hello, http, jobs)", template);
    return -1;
  }
  char *src = join(dir, "src");
  if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || (mkdir(src, 0755) != 0 && errno != EEXIST)) {
    snprintf(err, errlen, "%s: %s", src, strerror(errno));
    free(src);
    return -1;
  }
  free(src);
  for (size_t i = 0; scaffold[i].name; i++) {
    char *path = join(dir, scaffold[i].name);
    FILE *f = fopen(path, "wx");
    if (!f && errno == EEXIST) { fprintf(stderr, "taskhost: %s exists, kept\n", path); free(path); continue; }
    if (!f || fputs(scaffold[i].text, f) < 0 || fclose(f) != 0) {
      snprintf(err, errlen, "%s: %s", path, strerror(errno));
      free(path);
      return -1;
    }
    free(path);
  }
  return 0;
}
