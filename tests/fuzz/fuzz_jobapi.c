/* Fuzzes the job API's query-string parsing (jobapi.c: jobapi_submit_opts, jobapi_list_opts;
** civetweb's mg_get_var, duration_parse, job_state_parse underneath). The input is the query
** string as civetweb hands it over: a NUL-terminated string. */
#include "jobs/jobapi.h"
#include "jobs/jobq.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *qs = malloc(size + 1);
  memcpy(qs, data, size);
  qs[size] = '\0';
  struct jobq_publish_opts o;
  char id[JOBQ_KEY_MAX + 2], msg[128];
  if (jobapi_submit_opts(qs, &o, id, sizeof id, msg, sizeof msg) == 0) {
    if (o.id && (o.id != id || !memchr(id, '\0', sizeof id))) abort();
    if (o.delay_ns < 0 || o.max_retries < -1) abort();
  } else if (!memchr(msg, '\0', sizeof msg)) {
    abort();
  }
  int state;
  long long after, limit;
  if (jobapi_list_opts(qs, &state, &after, &limit, msg, sizeof msg) == 0 &&
      (limit < 1 || limit > 1000 || after < 0))
    abort();
  free(qs);
  return 0;
}
