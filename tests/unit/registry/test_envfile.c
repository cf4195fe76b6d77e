/* test_envfile.c — the .env parser: assignments, quotes, comments, export, escapes, errors. */
#include "registry/envfile.h"
#include "t.h"

struct got {
  char buf[1024];
  int lines[16];
  int n;
};

static int collect(void *ud, const char *key, const char *value, int line) {
  struct got *g = ud;
  size_t k = strlen(g->buf);
  snprintf(g->buf + k, sizeof g->buf - k, "%s=[%s];", key, value);
  if (g->n < 16) g->lines[g->n] = line;
  g->n++;
  return 0;
}

/* The text in a heap block of exactly its length (no NUL after it), so a read past the end
** is an ASan error, as it is for a file's bytes. */
static int parse(const char *text, struct got *g, int *line, char *err) {
  memset(g, 0, sizeof *g);
  size_t n = strlen(text);
  char *copy = malloc(n ? n : 1);
  memcpy(copy, text, n);
  int rc = envfile_parse(copy, n, collect, g, line, err, 128);
  free(copy);
  return rc;
}

TEST(plain_comments_blank_export) {
  struct got g;
  int line;
  char err[128];
  CHECK_INT(parse("# top\n\nA=1\n  export B = two words  # c\r\nC=\nD=x#y\n", &g, &line, err), 0);
  CHECK_STR(g.buf, "A=[1];B=[two words];C=[];D=[x#y];");
  CHECK_INT(g.lines[0], 3);
  CHECK_INT(g.lines[1], 4);
  CHECK_INT(g.lines[3], 6);
}

TEST(quotes_and_escapes) {
  struct got g;
  int line;
  char err[128];
  CHECK_INT(parse("S='a \\n # $x'\nD=\"l1\\nl2\\t\\\"q\\\" \\\\ \\$ \\z\"  # c\nE=\"\"\nexport=1\n", &g, &line, err), 0);
  CHECK_STR(g.buf, "S=[a \\n # $x];D=[l1\nl2\t\"q\" \\ $ \\z];E=[];export=[1];");
}

TEST(malformed_lines_give_their_number) {
  struct got g;
  int line;
  char err[128];
  CHECK_INT(parse("A=1\nB\n", &g, &line, err), -1);
  CHECK_INT(line, 2);
  CHECK_CONTAINS(err, "expected '='");
  CHECK_INT(parse("A=1\n\n# x\nQ=\"open\n", &g, &line, err), -1);
  CHECK_INT(line, 4);
  CHECK_CONTAINS(err, "unterminated double quote");
  CHECK_INT(parse("Q='x' y\n", &g, &line, err), -1);
  CHECK_INT(line, 1);
  CHECK_CONTAINS(err, "after the closing quote");
  CHECK_INT(parse("ok=1\n9X=1\n", &g, &line, err), -1);
  CHECK_INT(line, 2);
  CHECK_CONTAINS(err, "variable name");
  CHECK_INT(parse("Q='x\n", &g, &line, err), -1);
  CHECK_CONTAINS(err, "unterminated single quote");
  /* "export" and spaces, then the end of the file (found by fuzz_envfile: it read past it) */
  CHECK_INT(parse("##  c\nexport   ", &g, &line, err), -1);
  CHECK_INT(line, 2);
  CHECK_CONTAINS(err, "variable name");
}

int main(void) {
  RUN(plain_comments_blank_export);
  RUN(quotes_and_escapes);
  RUN(malformed_lines_give_their_number);
  return T_DONE();
}
