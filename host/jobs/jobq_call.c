/*
** jobq_call.c — jobq.h's calls that park: one struct for a publish or a job-record call,
** started asynchronously (the postgres driver answers on its own threads) or run on the
** calling thread (every other driver, and callers that cannot park).
**
** Threads: jobq_call_run runs on the caller's thread; jobq_call_start hands a postgres
** queue's call to pgq (done on its writer or reader thread) and runs any other one inline.
*/
#include "jobq_impl.h"
#include "pgq.h"

int jobq_call_parks(struct jobq *q) { return q->pg != NULL; }

static void run_publish(struct jobq *q, struct jobq_call *c) {
  c->existed = 0;
  if (!c->ids) {
    c->rc = jobq_publish(q, c->data[0], c->lens[0], c->o, c->id_out, sizeof c->id_out,
                         &c->existed, c->err, sizeof c->err);
  } else {
    c->rc = jobq_publish_many(q, c->data, c->lens, c->n, c->o, c->ids, c->err, sizeof c->err);
  }
}

void jobq_call_run(struct jobq *q, struct jobq_call *c) {
  if (q->pg) { pgq_call_run(q->pg, c); return; }
  switch (c->op) {
  case JC_PUBLISH: run_publish(q, c); break;
  case JC_INFO: c->rc = jobq_job_info(q, c->id, c->out); break;
  case JC_RESULT: c->rc = jobq_job_result(q, c->id, c->out); break;
  case JC_LIST: jobq_list(q, c->state, c->after, c->limit, c->out, &c->next); c->rc = 0; break;
  case JC_CANCEL: c->rc = jobq_cancel(q, c->id); break;
  case JC_FORGET: c->rc = jobq_forget(q, c->id); break;
  case JC_RETRY: c->rc = jobq_retry(q, c->id); break;
  case JC_REQUEUE: c->rc = jobq_requeue(q, c->id); break;
  case JC_STATS: jobq_stats(q, &c->st); c->rc = 0; break;
  }
}

void jobq_call_start(struct jobq *q, struct jobq_call *c) {
  if (q->pg) { pgq_call_start(q->pg, c); return; }
  jobq_call_run(q, c);
  c->done(c);
}
