/*
** t.h — a tiny unit-test harness. Each test file defines TEST(name) functions and a main
** that calls RUN(name) for each, then returns T_DONE(). A failed CHECK prints file:line and
** marks the test failed; the test continues so one run shows every broken expectation.
** Exit status is non-zero when anything failed, which is what ctest reads.
*/
#ifndef TASKHOST_T_H
#define TASKHOST_T_H

#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static int t_failed_total, t_run_total, t_cur_failed;

#define TEST(name) static void name(void)
#define RUN(name) do { \
    t_cur_failed = 0; t_run_total++; name(); \
    if (t_cur_failed) { t_failed_total++; printf("FAIL %s\n", #name); } \
    else printf("ok   %s\n", #name); \
    fflush(stdout);  /* a test that hangs until ctest kills it: the lines before it still show */ \
  } while (0)
#define T_DONE() (printf("%d passed, %d failed\n", t_run_total - t_failed_total, t_failed_total), \
                  t_failed_total ? 1 : 0)

#define CHECK(cond) do { if (!(cond)) { \
    printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); fflush(stdout); t_cur_failed = 1; } } while (0)
#define CHECK_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { \
    printf("  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, _a, _b); fflush(stdout); t_cur_failed = 1; } } while (0)
#define CHECK_STR(a, b) do { const char *_a = (a), *_b = (b); \
    if (!_a || !_b || strcmp(_a, _b) != 0) { \
    printf("  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, _a ? _a : "(null)", \
           _b ? _b : "(null)"); fflush(stdout); t_cur_failed = 1; } } while (0)
#define CHECK_CONTAINS(hay, needle) do { const char *_h = (hay), *_n = (needle); \
    if (!_h || !strstr(_h, _n)) { \
    printf("  %s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, _h ? _h : "(null)", _n); \
    fflush(stdout); t_cur_failed = 1; } } while (0)

#endif
