/*
** metrics.c — see metrics.h. Families and series live in chained hash tables keyed by
** strings (a family by its name, a series by its label text, which is also what is
** printed: `a="x",b="y"`, names sorted, values escaped). Everything below `lock` is guarded
** by it; collectors are copied out of it and run unlocked.
*/
#include "metrics.h"
#include "util.h"

#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double default_bounds[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
#define NBOUNDS (sizeof default_bounds / sizeof default_bounds[0])

/* Why a series was refused: the label of taskhost_metrics_series_refused_total. */
enum { R_NAMES, R_PER_NAME, R_TOTAL, R_COUNT };
static const char *const refused_reason[R_COUNT] = {"metric_names", "series_per_metric", "series_total"};

struct node { struct node *next; char *key; uint64_t hash; };
struct table { struct node **slots; size_t n, cap; };

struct series {
  struct node n;              /* key: the label text */
  double value;               /* counter, gauge */
  double sum;                 /* histogram */
  uint64_t count, buckets[NBOUNDS];   /* buckets: not cumulative; +Inf is count */
};

struct family {
  struct node n;              /* key: the metric name */
  enum metric_type type;
  struct table series;
};

struct collector { metrics_collector fn; void *ud; };

struct metrics {
  pthread_mutex_t lock;
  struct metrics_limits lim;
  struct table families;
  size_t nseries;
  uint64_t refused[R_COUNT];
  struct collector *collectors;
  size_t ncollectors;
};

struct mcollect { struct buf *out; };

/* ---- string-keyed tables ---- */

static struct node *tab_get(const struct table *t, const char *key, uint64_t h) {
  if (!t->cap) return NULL;
  for (struct node *x = t->slots[h & (t->cap - 1)]; x; x = x->next)
    if (x->hash == h && strcmp(x->key, key) == 0) return x;
  return NULL;
}

static void tab_put(struct table *t, struct node *x) {
  if ((t->n + 1) * 4 > t->cap * 3) {     /* load factor at most 3/4 */
    size_t cap = t->cap ? t->cap * 2 : 16;
    struct node **s = xcalloc(cap, sizeof *s);
    for (size_t i = 0; i < t->cap; i++)
      for (struct node *y = t->slots[i], *next; y; y = next) {
        next = y->next;
        y->next = s[y->hash & (cap - 1)];
        s[y->hash & (cap - 1)] = y;
      }
    free(t->slots);
    t->slots = s;
    t->cap = cap;
  }
  x->next = t->slots[x->hash & (t->cap - 1)];
  t->slots[x->hash & (t->cap - 1)] = x;
  t->n++;
}

/* The nodes in key order (a malloc'd array of t->n). */
static int node_cmp(const void *a, const void *b) {
  return strcmp((*(struct node *const *)a)->key, (*(struct node *const *)b)->key);
}
static struct node **tab_sorted(const struct table *t) {
  struct node **v = xmalloc((t->n ? t->n : 1) * sizeof *v);
  size_t k = 0;
  for (size_t i = 0; i < t->cap; i++)
    for (struct node *x = t->slots[i]; x; x = x->next) v[k++] = x;
  qsort(v, k, sizeof *v, node_cmp);
  return v;
}

/* ---- validation and label text ---- */

static int name_char(int c, int first, int colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return 1;
  if (colon && c == ':') return 1;
  return !first && c >= '0' && c <= '9';
}

int metrics_valid_name(const char *s) {
  if (!*s) return 0;
  for (size_t i = 0; s[i]; i++) if (!name_char((unsigned char)s[i], i == 0, 1)) return 0;
  return 1;
}

int metrics_valid_label(const char *s) {
  if (!*s || (s[0] == '_' && s[1] == '_')) return 0;
  for (size_t i = 0; s[i]; i++) if (!name_char((unsigned char)s[i], i == 0, 0)) return 0;
  return 1;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static int utf8_ok(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || i + len > n || (len == 2 && c < 0xC2) || c > 0xF4) return 0;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return 0;
    i += len;
  }
  return 1;
}

/* Label values as the exposition format wants them: \\, \" and \n escaped. */
static void add_escaped(struct buf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '\\') buf_adds(b, "\\\\");
    else if (c == '"') buf_adds(b, "\\\"");
    else if (c == '\n') buf_adds(b, "\\n");
    else buf_addc(b, c);
  }
}

static int label_cmp(const void *a, const void *b) {
  return strcmp(((const struct mlabel *)a)->name, ((const struct mlabel *)b)->name);
}

static void add_labels(struct buf *b, const struct mlabel *l, size_t n) {
  for (size_t i = 0; i < n; i++) {
    buf_printf(b, "%s%s=\"", i ? "," : "", l[i].name);
    add_escaped(b, l[i].value, l[i].vlen);
    buf_addc(b, '"');
  }
}

/* Checks the labels and writes their key (sorted, escaped) into key. */
static int label_key(const struct metrics *m, const struct mlabel *l, size_t n, struct buf *key,
                     char *err, size_t errlen) {
  if (n > m->lim.max_labels) {
    snprintf(err, errlen, "%zu labels (at most %zu per series)", n, m->lim.max_labels);
    return M_INVALID;
  }
  struct mlabel s[METRICS_MAX_LABELS];
  if (n) memcpy(s, l, n * sizeof *l);
  for (size_t i = 0; i < n; i++) {
    if (strlen(s[i].name) > m->lim.max_name_len || !metrics_valid_label(s[i].name)) {
      snprintf(err, errlen, "bad label name '%.64s' (want [a-zA-Z_][a-zA-Z0-9_]*, not __..., at most %zu bytes)",
               s[i].name, m->lim.max_name_len);
      return M_INVALID;
    }
    if (strcmp(s[i].name, "le") == 0 || strcmp(s[i].name, "quantile") == 0) {
      snprintf(err, errlen, "label name '%s' is reserved", s[i].name);
      return M_INVALID;
    }
    if (s[i].vlen > m->lim.max_value_len || !utf8_ok((const unsigned char *)s[i].value, s[i].vlen)) {
      snprintf(err, errlen, "label %s: the value must be UTF-8 of at most %zu bytes", s[i].name, m->lim.max_value_len);
      return M_INVALID;
    }
  }
  qsort(s, n, sizeof *s, label_cmp);
  for (size_t i = 1; i < n; i++)
    if (strcmp(s[i - 1].name, s[i].name) == 0) {
      snprintf(err, errlen, "label %s given twice", s[i].name);
      return M_INVALID;
    }
  add_labels(key, s, n);
  return M_OK;
}

/* ---- the registry ---- */

struct metrics *metrics_new(const struct metrics_limits *lim) {
  struct metrics *m = xcalloc(1, sizeof *m);
  static const struct metrics_limits dflt = {1000, 1000, 10000, METRICS_MAX_LABELS, 200, 1024};
  m->lim = dflt;
  if (lim) {                         /* every field is a size_t: a zero one keeps the default */
    size_t *dst = &m->lim.max_names;
    const size_t *src = &lim->max_names;
    for (size_t i = 0; i < sizeof *lim / sizeof(size_t); i++) if (src[i]) dst[i] = src[i];
  }
  if (m->lim.max_labels > METRICS_MAX_LABELS) m->lim.max_labels = METRICS_MAX_LABELS;
  pthread_mutex_init(&m->lock, NULL);
  return m;
}

static void tab_free(struct table *t, void (*fn)(struct node *)) {
  for (size_t i = 0; i < t->cap; i++)
    for (struct node *x = t->slots[i], *next; x; x = next) {
      next = x->next;
      fn(x);
    }
  free(t->slots);
}

static void series_free(struct node *x) { free(x->key); free(x); }
static void family_free(struct node *x) {
  tab_free(&((struct family *)x)->series, series_free);
  free(x->key);
  free(x);
}

void metrics_free(struct metrics *m) {
  if (!m) return;
  tab_free(&m->families, family_free);
  free(m->collectors);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

static const char *const type_name[] = {[MT_COUNTER] = "counter", [MT_GAUGE] = "gauge", [MT_HISTOGRAM] = "histogram"};

/* The series of name+labels, made within the budgets. Called with the lock held. */
static struct series *series_get(struct metrics *m, const char *name, enum metric_type type,
                                 const char *key, int *rc, char *err, size_t errlen) {
  uint64_t fh = str_hash(name), sh = str_hash(key);
  struct family *f = (struct family *)tab_get(&m->families, name, fh);
  if (f && f->type != type) {
    snprintf(err, errlen, "metric %s is a %s, not a %s", name, type_name[f->type], type_name[type]);
    *rc = M_INVALID;
    return NULL;
  }
  struct series *s = f ? (struct series *)tab_get(&f->series, key, sh) : NULL;
  if (s) return s;
  int why = !f && m->families.n >= m->lim.max_names ? R_NAMES
          : f && f->series.n >= m->lim.max_series_per_name ? R_PER_NAME
          : m->nseries >= m->lim.max_series ? R_TOTAL : -1;
  if (why >= 0) {
    m->refused[why]++;
    size_t lims[] = {m->lim.max_names, m->lim.max_series_per_name, m->lim.max_series};
    static const char *const what[] = {"metric names", "series per metric", "series in all"};
    snprintf(err, errlen, "metric %s: new series refused (at most %zu %s)", name, lims[why], what[why]);
    *rc = M_LIMIT;
    return NULL;
  }
  if (!f) {
    f = xcalloc(1, sizeof *f);
    f->n.key = xstrdup(name);
    f->n.hash = fh;
    f->type = type;
    tab_put(&m->families, &f->n);
  }
  s = xcalloc(1, sizeof *s);
  s->n.key = xstrdup(key);
  s->n.hash = sh;
  tab_put(&f->series, &s->n);
  m->nseries++;
  return s;
}

enum op { OP_ADD, OP_SET, OP_OBSERVE };

static int update(struct metrics *m, enum metric_type type, enum op op, const char *name,
                  const struct mlabel *l, size_t n, double v, char *err, size_t errlen) {
  if (strlen(name) > m->lim.max_name_len || !metrics_valid_name(name)) {
    snprintf(err, errlen, "bad metric name '%.64s' (want [a-zA-Z_:][a-zA-Z0-9_:]*, at most %zu bytes)",
             name, m->lim.max_name_len);
    return M_INVALID;
  }
  if (strncmp(name, "taskhost_", 9) == 0) {
    snprintf(err, errlen, "metric %s: names starting with taskhost_ belong to the host", name);
    return M_INVALID;
  }
  if (!isfinite(v) || (type == MT_COUNTER && v < 0)) {
    snprintf(err, errlen, "metric %s: %s", name, isfinite(v) ? "a counter only goes up" : "the value must be finite");
    return M_INVALID;
  }
  struct buf key;
  buf_init(&key);
  buf_adds(&key, "");
  int rc = label_key(m, l, n, &key, err, errlen);
  if (rc == M_OK) {
    pthread_mutex_lock(&m->lock);
    struct series *s = series_get(m, name, type, key.data, &rc, err, errlen);
    if (s && op == OP_ADD) s->value += v;
    else if (s && op == OP_SET) s->value = v;
    else if (s) {
      size_t i = 0;
      while (i < NBOUNDS && v > default_bounds[i]) i++;
      if (i < NBOUNDS) s->buckets[i]++;
      s->count++;
      s->sum += v;
    }
    pthread_mutex_unlock(&m->lock);
  }
  buf_free(&key);
  return rc;
}

int metrics_counter_add(struct metrics *m, const char *name, const struct mlabel *l, size_t n,
                        double v, char *err, size_t errlen) {
  return update(m, MT_COUNTER, OP_ADD, name, l, n, v, err, errlen);
}
int metrics_gauge_set(struct metrics *m, const char *name, const struct mlabel *l, size_t n,
                      double v, char *err, size_t errlen) {
  return update(m, MT_GAUGE, OP_SET, name, l, n, v, err, errlen);
}
int metrics_gauge_add(struct metrics *m, const char *name, const struct mlabel *l, size_t n,
                      double v, char *err, size_t errlen) {
  return update(m, MT_GAUGE, OP_ADD, name, l, n, v, err, errlen);
}
int metrics_observe(struct metrics *m, const char *name, const struct mlabel *l, size_t n,
                    double v, char *err, size_t errlen) {
  return update(m, MT_HISTOGRAM, OP_OBSERVE, name, l, n, v, err, errlen);
}

void metrics_add_collector(struct metrics *m, metrics_collector fn, void *ud) {
  pthread_mutex_lock(&m->lock);
  m->collectors = xrealloc(m->collectors, (m->ncollectors + 1) * sizeof *m->collectors);
  m->collectors[m->ncollectors++] = (struct collector){fn, ud};
  pthread_mutex_unlock(&m->lock);
}

/* ---- text ---- */

char *metrics_fmt_value(double v, char buf[40]) {
  if (isnan(v)) return strcpy(buf, "NaN");
  if (isinf(v)) return strcpy(buf, v > 0 ? "+Inf" : "-Inf");
  if (v == floor(v) && fabs(v) < 1e15) { snprintf(buf, 40, "%.0f", v); return buf; }
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(buf, 40, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  return buf;
}

/* name{labels[,extra]} value */
static void sample_line(struct buf *b, const char *name, const char *suffix, const char *labels,
                        const char *extra, double v) {
  char num[40];
  buf_printf(b, "%s%s", name, suffix);
  if (*labels || extra) buf_printf(b, "{%s%s%s}", labels, *labels && extra ? "," : "", extra ? extra : "");
  buf_printf(b, " %s\n", metrics_fmt_value(v, num));
}

static void render_series(struct buf *b, const struct family *f, const struct series *s) {
  const char *name = f->n.key, *lab = s->n.key;
  if (f->type != MT_HISTOGRAM) { sample_line(b, name, "", lab, NULL, s->value); return; }
  uint64_t cum = 0;
  char le[64], num[40];
  for (size_t i = 0; i < NBOUNDS; i++) {
    cum += s->buckets[i];
    snprintf(le, sizeof le, "le=\"%s\"", metrics_fmt_value(default_bounds[i], num));
    sample_line(b, name, "_bucket", lab, le, (double)cum);
  }
  sample_line(b, name, "_bucket", lab, "le=\"+Inf\"", (double)s->count);
  sample_line(b, name, "_sum", lab, NULL, s->sum);
  sample_line(b, name, "_count", lab, NULL, (double)s->count);
}

void mc_family(struct mcollect *c, const char *name, const char *type, const char *help) {
  if (help) buf_printf(c->out, "# HELP %s %s\n", name, help);
  buf_printf(c->out, "# TYPE %s %s\n", name, type);
}

void mc_sample(struct mcollect *c, const char *name, const struct mlabel *l, size_t n, double v) {
  struct buf lab;
  buf_init(&lab);
  buf_adds(&lab, "");
  add_labels(&lab, l, n);
  sample_line(c->out, name, "", lab.data, NULL, v);
  buf_free(&lab);
}

void metrics_render(struct metrics *m, struct buf *out) {
  pthread_mutex_lock(&m->lock);
  struct node **fs = tab_sorted(&m->families);
  for (size_t i = 0; i < m->families.n; i++) {
    const struct family *f = (const struct family *)fs[i];
    buf_printf(out, "# TYPE %s %s\n", f->n.key, type_name[f->type]);
    struct node **ss = tab_sorted(&f->series);
    for (size_t k = 0; k < f->series.n; k++) render_series(out, f, (const struct series *)ss[k]);
    free(ss);
  }
  free(fs);
  uint64_t refused[R_COUNT];
  memcpy(refused, m->refused, sizeof refused);
  size_t nseries = m->nseries, ncol = m->ncollectors;
  struct collector *cols = xmalloc((ncol ? ncol : 1) * sizeof *cols);
  if (ncol) memcpy(cols, m->collectors, ncol * sizeof *cols);
  pthread_mutex_unlock(&m->lock);

  struct mcollect c = {out};
  mc_family(&c, "taskhost_metrics_series", "gauge", "Series made by scripts through the metrics module.");
  mc_sample(&c, "taskhost_metrics_series", NULL, 0, (double)nseries);
  mc_family(&c, "taskhost_metrics_series_refused_total", "counter",
            "New script series refused because a cardinality budget was reached.");
  for (int r = 0; r < R_COUNT; r++) {
    struct mlabel l = {"reason", refused_reason[r], strlen(refused_reason[r])};
    mc_sample(&c, "taskhost_metrics_series_refused_total", &l, 1, (double)refused[r]);
  }
  for (size_t i = 0; i < ncol; i++) cols[i].fn(cols[i].ud, &c);
  free(cols);
}

/* Under AddressSanitizer malloc is the sanitizer's and mallinfo2 says 0: ask it instead. */
size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));
size_t __sanitizer_get_heap_size(void) __attribute__((weak));

void metrics_host_memory(struct host_mem *out) {
  struct mallinfo2 mi = mallinfo2();
  out->heap_in_use = (uint64_t)mi.uordblks + mi.hblkhd;
  out->heap_system = (uint64_t)mi.arena + mi.hblkhd;
  if (!out->heap_in_use && __sanitizer_get_current_allocated_bytes && __sanitizer_get_heap_size) {
    out->heap_in_use = __sanitizer_get_current_allocated_bytes();
    out->heap_system = __sanitizer_get_heap_size();
  }
  out->rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long size, res;
  if (f && fscanf(f, "%llu %llu", &size, &res) == 2) out->rss = res * (uint64_t)sysconf(_SC_PAGESIZE);
  if (f) fclose(f);
}
