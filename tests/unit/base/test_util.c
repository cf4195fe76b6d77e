/* Unit tests for util.c parsers a user's text reaches (http.service max_body, taskhost.yaml). */
#include "t.h"
#include "base/util.h"

#include <stdint.h>

TEST(size_parse_forms) {
  uint64_t b = 0;
  CHECK_INT(size_parse("512KB", &b), 0);
  CHECK_INT(b, 512 * 1024);
  CHECK_INT(size_parse("1GiB", &b), 0);
  CHECK_INT(b, 1 << 30);
  CHECK_INT(size_parse("1.5k", &b), 0);
  CHECK_INT(b, 1536);
  CHECK_INT(size_parse("12XB", &b), -1);
}

/* A size beyond uint64_t (or NaN/inf, which strtod accepts) was converted to uint64_t,
** undefined behaviour that read as some size; now it is refused. */
TEST(size_parse_out_of_range) {
  static const char *const bad[] = {"1e300", "nan", "inf", "infinity", "20000000TB", "18446744073709551616"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t b = 7;
    if (size_parse(bad[i], &b) != -1) printf("  size_parse(\"%s\") accepted: %llu\n", bad[i], (unsigned long long)b);
    CHECK_INT(size_parse(bad[i], &b), -1);
  }
}

int main(void) {
  RUN(size_parse_forms);
  RUN(size_parse_out_of_range);
  return T_DONE();
}
