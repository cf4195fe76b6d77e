/*
** term.c — see term.h. Threads: the reader thread owns stdin and the read buffer; it only
** posts messages. term_run/term_free are called by main.
*/
#include "term.h"
#include "msg.h"
#include "proc.h"
#include "rt.h"
#include "scheduler.h"
#include "base/util.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct term {
  struct rt *rt;
  struct sched *s;
  uint64_t pid;
  pthread_t reader;
  int reader_running;
  int stop_pipe[2];
};

static void post_line(struct term *t, const char *s, size_t n) {
  if (n && s[n - 1] == '\r') n--;
  proc_post(t->rt, t->pid, msg_new(MK_LINE, 0, s, n, NULL, 0), NULL);
}

/* Posts every complete line in b; keeps the unfinished tail. */
static void split_lines(struct term *t, struct buf *b) {
  size_t start = 0;
  for (size_t i = 0; i < b->len; i++)
    if (b->data[i] == '\n') { post_line(t, b->data + start, i - start); start = i + 1; }
  memmove(b->data, b->data + start, b->len - start);
  b->len -= start;
}

static void *reader_main(void *arg) {
  struct term *t = arg;
  struct buf b;
  buf_init(&b);
  struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = t->stop_pipe[0], .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    if (fds[1].revents) goto out;
    if (!fds[0].revents) continue;
    buf_reserve(&b, 4096);
    ssize_t n = read(STDIN_FILENO, b.data + b.len, 4096);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    b.len += (size_t)n;
    split_lines(t, &b);
  }
  if (b.len) post_line(t, b.data, b.len);          /* a partial last line is still a line */
  proc_post(t->rt, t->pid, msg_new(MK_EOF, 0, "", 0, NULL, 0), NULL);
out:
  buf_free(&b);
  return NULL;
}

struct term *term_new(struct rt *rt, const char *id) {
  struct term *t = xcalloc(1, sizeof *t);
  t->rt = rt;
  t->s = sched_new(rt, id, 1);
  if (pipe(t->stop_pipe) != 0) t->stop_pipe[0] = t->stop_pipe[1] = -1;
  return t;
}

struct sched *term_sched(struct term *t) { return t->s; }

uint64_t term_run(struct term *t, const struct code *code, const char *args, size_t args_len,
                  void (*on_exit)(void *, const struct exit_info *), void *ud) {
  struct spawn_opts o = {.args = args, .args_len = args_len, .on_exit = on_exit,
                         .on_exit_ud = ud, .terminal = 1};
  t->pid = proc_spawn(t->rt, t->s, code, &o);
  if (t->pid && pthread_create(&t->reader, NULL, reader_main, t) == 0) t->reader_running = 1;
  return t->pid;
}

void term_stop_reader(struct term *t) {
  if (!t->reader_running) return;
  if (write(t->stop_pipe[1], "x", 1) < 0) { /* the reader may already be gone */ }
  pthread_join(t->reader, NULL);
  t->reader_running = 0;
}

void term_free(struct term *t) {
  if (!t) return;
  term_stop_reader(t);
  sched_free(t->s);
  if (t->stop_pipe[0] >= 0) { close(t->stop_pipe[0]); close(t->stop_pipe[1]); }
  free(t);
}
