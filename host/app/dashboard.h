/*
** dashboard.h — the live dashboard under /_taskhost/ on the admin listener (http/admin.h
** serves it and keeps the auth): the page's assets (the files of host/app/dashboard/, embedded by CMake),
** a JSON view of the whole host (dash_state.c), the history ring of the last minutes
** (dash_hist.h) filled by a sampler thread of its own, and the job list and job actions of
** every queue (through jobq_call, so any driver). App-internal: only app_metrics.c uses it.
**
** Endpoints (paths under /_taskhost/; everything answers JSON except the assets):
**   GET  ""  index.html, app.js, app.css     the page (ETag; a versioned URL caches for a year)
**   GET  api/state                          hosts, busiest processes, services, HTTP routes,
**                                           queues, registry (dash_state.c)
**   GET  api/history?since=MS               the samples after MS (dash_hist.h)
**   GET  api/jobs?queue=Q&state=S&after=N&limit=L   one page of jobq_list, {jobs, next}
**   GET  api/job?queue=Q&id=ID              one job's record
**   POST api/job/cancel|retry|requeue?queue=Q&id=ID  {id, was, state}; 409 when the job's
**                                           state does not allow it
** Unknown paths 404, a known path with another method 405, a bad parameter 400, an unknown
** queue or job 404, all as {"error": ...}.
**
** Threads: dash_new/dash_free on the main thread (dash_free before anything it reads is
** freed); dash_serve on the admin listener's threads; the sampler on its own thread.
*/
#ifndef TASKHOST_DASHBOARD_H
#define TASKHOST_DASHBOARD_H

#include <pthread.h>
#include <stdint.h>

struct admin_req;
struct admin_resp;
struct app;
struct buf;
struct dhist;

#define DASH_PREFIX "/_taskhost/"
#define DASH_SAMPLES 600           /* history: 10 minutes … */
#define DASH_INTERVAL_MS 1000      /* … of one sample a second */
#define DASH_SERIES_MAX 96         /* series kept in the history */
#define DASH_TOP 10                /* busiest processes listed */

struct dashboard {
  struct app *a;
  struct dhist *hist;
  pthread_t sampler;
  pthread_mutex_t lock;            /* guards stop (with cv) */
  pthread_cond_t cv;
  int stop, started;
  char version[24];                /* the assets' version: ETag and ?v= */
};

struct dashboard *dash_new(struct app *a);
void dash_free(struct dashboard *d);
/* The admin_handler of DASH_PREFIX (ud: the dashboard). */
void dash_serve(void *ud, const struct admin_req *rq, struct admin_resp *rs);

/* dash_state.c: the api/state document into out; one sample of the history. */
void dash_state_json(struct dashboard *d, struct buf *out);
void dash_sample(struct dashboard *d, int64_t t_ms);

#endif
