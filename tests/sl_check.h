/*
 * sl_check.h - the few lines of test harness the C unit tests share.
 *
 * A test is a void function; CHECK stops it at the first failed
 * condition (one broken invariant usually breaks many more, and the
 * first is the one worth reading).  RUN counts each test as passed or
 * failed, and sl_check_done prints "N passed, N failed" and gives the
 * exit status.
 */
#ifndef SL_CHECK_H
#define SL_CHECK_H

#include <stdio.h>

static int sl_passed, sl_failed, sl_test_ok;

#define CHECK(cond) do { \
    if (!(cond)) { \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      sl_test_ok = 0; \
      return; \
    } \
  } while (0)

#define RUN(fn) do { \
    sl_test_ok = 1; \
    fn(); \
    if (sl_test_ok) sl_passed++; \
    else { sl_failed++; fprintf(stderr, "FAILED: %s\n", #fn); } \
  } while (0)

static int sl_check_done(void) {
  printf("%d passed, %d failed\n", sl_passed, sl_failed);
  return sl_failed ? 1 : 0;
}

#endif
