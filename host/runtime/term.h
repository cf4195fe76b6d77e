/*
** term.h — a terminal.host: a one-worker process host whose process may use stdin/stdout
** through the io module. A reader thread turns stdin into MK_LINE / MK_EOF messages for the
** process it runs; it polls a stop pipe so shutdown never waits on a blocked read.
*/
#ifndef TASKHOST_TERM_H
#define TASKHOST_TERM_H

#include <stddef.h>
#include <stdint.h>

struct rt;
struct code;
struct sched;
struct term;
struct exit_info;

struct term *term_new(struct rt *rt, const char *id);
struct sched *term_sched(struct term *t);
/* Starts `code` on the terminal with packed args and a C exit watcher. Returns the pid or 0. */
uint64_t term_run(struct term *t, const struct code *code, const char *args, size_t args_len,
                  void (*on_exit)(void *, const struct exit_info *), void *ud);
void term_stop_reader(struct term *t);
void term_free(struct term *t);        /* after its process has exited */

#endif
