/*
** cw_plain.c — the benchmark's reference: a minimal civetweb server answering
** POST /api/tasks with the http-async-task contract, the handler written in plain C (cJSON).
** Same civetweb options as taskhost's http.service. Prints "served R requests on C
** connections" to stderr when it gets SIGTERM/SIGINT.
**   cc -O2 cw_plain.c -o cw_plain -lcivetweb -lcjson
**   ./cw_plain PORT THREADS
*/
#include <civetweb.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic unsigned long requests, connections;

static void reply(struct mg_connection *c, int status, const char *reason, const char *body) {
  char head[256];
  size_t blen = strlen(body);
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                   status, reason, blen);
  char *all = malloc((size_t)n + blen);
  memcpy(all, head, (size_t)n);
  memcpy(all + n, body, blen);
  mg_write(c, all, (size_t)n + blen);
  free(all);
}

static void bad(struct mg_connection *c, const char *msg) {
  char body[200];
  snprintf(body, sizeof body, "{\"error\":\"%s\"}", msg);
  reply(c, 400, "Bad Request", body);
}

static int handle(struct mg_connection *c, void *unused) {
  const struct mg_request_info *ri = mg_get_request_info(c);
  atomic_fetch_add(&requests, 1);
  if (!mg_get_user_connection_data(c)) {
    mg_set_user_connection_data(c, c);
    atomic_fetch_add(&connections, 1);
  }
  if (strcmp(ri->request_method, "POST") != 0) {
    mg_printf(c, "HTTP/1.1 405 Method Not Allowed\r\nAllow: POST, OPTIONS\r\nContent-Length: 0\r\n\r\n");
    return 405;
  }
  char buf[65536];
  int len = 0, n;
  while (len < (int)sizeof buf - 1 && (n = mg_read(c, buf + len, sizeof buf - 1 - (size_t)len)) > 0) len += n;
  buf[len] = '\0';
  cJSON *t = cJSON_Parse(buf);
  if (!cJSON_IsObject(t)) { cJSON_Delete(t); bad(c, "invalid JSON body"); return 400; }
  cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
  if (!cJSON_IsString(name) || !name->valuestring[0]) {
    cJSON_Delete(t);
    bad(c, "name is required and must be a non-empty string");
    return 400;
  }
  cJSON *d = cJSON_GetObjectItemCaseSensitive(t, "duration");
  int duration = cJSON_IsNumber(d) ? d->valueint : 3;
  char id[32], msg[80];
  snprintf(id, sizeof id, "task_%ld", (long)time(NULL));
  snprintf(msg, sizeof msg, "Task will run for %d seconds in background", duration);
  cJSON *out = cJSON_CreateObject();
  cJSON_AddStringToObject(out, "task_id", id);
  cJSON_AddStringToObject(out, "name", name->valuestring);
  cJSON_AddStringToObject(out, "status", "accepted");
  cJSON_AddStringToObject(out, "message", msg);
  char *text = cJSON_PrintUnformatted(out);
  reply(c, 202, "Accepted", text);
  free(text);
  cJSON_Delete(out);
  cJSON_Delete(t);
  return 202;
}

static int allow_all(struct mg_connection *c, void *unused) { return 1; }

static int on_connection(const struct mg_connection *c, void **data) { *data = NULL; return 0; }

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: cw_plain PORT THREADS\n"); return 2; }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  char ports[64];
  snprintf(ports, sizeof ports, "127.0.0.1:%s", argv[1]);
  const char *opts[] = {"listening_ports", ports, "num_threads", argv[2], "enable_keep_alive", "yes",
                        "keep_alive_timeout_ms", "2000", "request_timeout_ms", "30000",
                        "listen_backlog", "4096", "connection_queue", "1024", "tcp_nodelay", "1",
                        "document_root", ".", NULL};
  struct mg_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.init_connection = on_connection;
  mg_init_library(0);
  struct mg_context *ctx = mg_start(&cb, NULL, opts);
  if (!ctx) { fprintf(stderr, "cannot start\n"); return 1; }
  mg_set_request_handler(ctx, "/api/tasks", handle, NULL);
  mg_set_auth_handler(ctx, "/", allow_all, NULL);   /* as taskhost: no .htpasswd stat per request */
  fprintf(stderr, "listening on %s\n", ports);
  int sig;
  sigwait(&set, &sig);
  mg_stop(ctx);
  fprintf(stderr, "served %lu requests on %lu connections\n", atomic_load(&requests), atomic_load(&connections));
  return 0;
}
