/*
** metrics.h — the host's registry of Prometheus series: counters, gauges and histograms that
** scripts update (lua/lmod_metrics.c), plus collectors, one callback per subsystem, that
** write the host's own series when the text is rendered (the admin listener's GET /metrics).
**
** Threads: any thread may call any function at any time. One mutex guards the families and
** series; it is held only while one series is found or made and updated, and while the
** script series are rendered. Collectors run after that lock is released (they take their
** own subsystems' locks), in the order they were added, on the rendering thread.
**
** A series is a metric name plus a set of labels; label order never matters (the key is the
** labels sorted by name). Budgets (struct metrics_limits) are checked before anything is
** made: names, labels per series, label bytes; metric names, series per name and series in
** all. An excess series is refused and counted in taskhost_metrics_series_refused_total.
*/
#ifndef TASKHOST_METRICS_H
#define TASKHOST_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct metrics;
struct mcollect;

enum metric_type { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM };

/* Results: 0 ok; M_INVALID a bad name, label, value or a name used with another type;
** M_LIMIT a new series over a budget (refused and counted). err says which. */
enum { M_OK = 0, M_INVALID = -1, M_LIMIT = -2 };

struct mlabel { const char *name; const char *value; size_t vlen; };

struct metrics_limits {
  size_t max_names;             /* metric names (families) made by scripts: 1000 */
  size_t max_series_per_name;   /* 1000 */
  size_t max_series;            /* over all names: 10000 */
  size_t max_labels;            /* labels per series: 16 */
  size_t max_name_len;          /* metric and label names, bytes: 200 */
  size_t max_value_len;         /* label value, bytes: 1024 */
};
#define METRICS_MAX_LABELS 16     /* hard cap of max_labels (callers size arrays with it) */

/* lim NULL (or a zero field): the defaults above. */
struct metrics *metrics_new(const struct metrics_limits *lim);
void metrics_free(struct metrics *m);

/* counter += v (v >= 0); gauge = v or += v; histogram observes v (default buckets
** .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 +Inf). v must be finite. Names starting with
** "taskhost_" belong to the host and are refused (M_INVALID). */
int metrics_counter_add(struct metrics *m, const char *name, const struct mlabel *l, size_t n,
                        double v, char *err, size_t errlen);
int metrics_gauge_set(struct metrics *m, const char *name, const struct mlabel *l, size_t n,
                      double v, char *err, size_t errlen);
int metrics_gauge_add(struct metrics *m, const char *name, const struct mlabel *l, size_t n,
                      double v, char *err, size_t errlen);
int metrics_observe(struct metrics *m, const char *name, const struct mlabel *l, size_t n,
                    double v, char *err, size_t errlen);

/* Validators (Prometheus rules): metric [a-zA-Z_:][a-zA-Z0-9_:]*, label [a-zA-Z_][a-zA-Z0-9_]*
** not starting with "__". 1 if valid. */
int metrics_valid_name(const char *s);
int metrics_valid_label(const char *s);

/* Collectors: fn writes host series through mc_family/mc_sample. Add them before the first
** render; they live as long as m (ud must too). */
typedef void (*metrics_collector)(void *ud, struct mcollect *c);
void metrics_add_collector(struct metrics *m, metrics_collector fn, void *ud);
/* One family header (# HELP, # TYPE), then its samples. type: "counter", "gauge",
** "histogram", "summary" or "untyped". Label values are escaped here. */
void mc_family(struct mcollect *c, const char *name, const char *type, const char *help);
void mc_sample(struct mcollect *c, const char *name, const struct mlabel *l, size_t n, double v);

/* Appends the text exposition format (version 0.0.4) of every series to out: script
** families sorted by name (series sorted by labels), then the refusal counters, then each
** collector's families. */
void metrics_render(struct metrics *m, struct buf *out);

/* The host process's memory: malloc's bytes in use and obtained from the system (glibc's
** mallinfo2: every arena and mmapped block), and the resident set (/proc/self/statm; 0 if
** unreadable). Any thread; takes malloc's arena locks briefly. */
struct host_mem { uint64_t heap_in_use, heap_system, rss; };
void metrics_host_memory(struct host_mem *out);

/* Prometheus number text: integers without a fraction, others the shortest form that reads
** back exactly, +Inf, -Inf, NaN. Returns buf. */
char *metrics_fmt_value(double v, char buf[40]);

#endif
