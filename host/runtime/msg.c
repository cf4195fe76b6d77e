/*
** msg.c — messages and their FIFO; see msg.h.
*/
#include "msg.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

struct msg *msg_new(int kind, uint64_t from, const char *topic, size_t topic_len,
                    const void *body, size_t len) {
  struct msg *m = xmalloc(sizeof *m + topic_len + 1 + len);
  m->next = NULL;
  m->kind = (uint8_t)kind;
  m->from = from;
  m->from_host = NULL;
  m->token = 0;
  m->at = 0;
  m->topic_len = (uint32_t)topic_len;
  m->len = (uint32_t)len;
  if (topic_len) memcpy(m->data, topic, topic_len);
  m->data[topic_len] = '\0';
  if (len) memcpy(m->data + topic_len + 1, body, len);
  return m;
}

struct msg *msg_new_io(uint64_t session, const struct io_ops *ops, void *req) {
  struct io_done d = {ops, req};
  struct msg *m = msg_new(MK_IO, 0, "", 0, &d, sizeof d);
  m->token = session;
  return m;
}

void msg_free(struct msg *m) {
  if (!m) return;
  if (m->kind == MK_IO) {
    struct io_done d;
    memcpy(&d, msg_body(m), sizeof d);
    d.ops->drop(d.req);
  }
  free(m);
}

void msgq_push(struct msgq *q, struct msg *m) {
  m->next = NULL;
  if (q->tail) q->tail->next = m;
  else q->head = m;
  q->tail = m;
  q->n++;
}

struct msg *msgq_pop(struct msgq *q) {
  struct msg *m = q->head;
  if (!m) return NULL;
  q->head = m->next;
  if (!q->head) q->tail = NULL;
  q->n--;
  m->next = NULL;
  return m;
}

void msgq_clear(struct msgq *q) {
  struct msg *m;
  while ((m = msgq_pop(q))) msg_free(m);
}
