/*
** dash_hist.h — the dashboard's history: a ring of the last `cap` samples (one a second by
** default) of named series, so a page just opened draws the last minutes. A sample is
** begun with a time, series are put into it by name, and it is ended; a series missing from
** a sample reads null there. Counters are put as their running total and stored as a rate
** per second over the previous sample (null on the first, and after a counter went back).
** At most `max_series` names are kept (later ones are counted in `dropped` and not stored);
** names are at most DH_NAME_MAX bytes (longer ones are cut).
** Threads: one writer (the dashboard's sampler thread) and any readers; one mutex.
*/
#ifndef TASKHOST_DASH_HIST_H
#define TASKHOST_DASH_HIST_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct dhist;

#define DH_NAME_MAX 200

struct dhist *dhist_new(size_t cap, size_t max_series);
void dhist_free(struct dhist *h);

/* One sample at wall time t_ms (later than the previous one). */
void dhist_begin(struct dhist *h, int64_t t_ms);
void dhist_put(struct dhist *h, const char *name, double v);        /* a gauge */
void dhist_count(struct dhist *h, const char *name, double total);  /* a counter: stored as /s */
void dhist_end(struct dhist *h);

/* {"t":[...],"series":{"name":[v|null,...]},"dropped":D} with the samples
** later than since_ms (0: all kept), oldest first. */
void dhist_json(struct dhist *h, int64_t since_ms, struct buf *out);
/* The series' value in the newest sample; NAN when absent or null. */
double dhist_last(struct dhist *h, const char *name);
size_t dhist_len(struct dhist *h);           /* samples kept */

#endif
