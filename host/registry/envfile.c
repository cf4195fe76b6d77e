/*
** envfile.c — `.env` text → (key, value) pairs; the grammar is in envfile.h. One line at a
** time into a scratch buffer as long as the line, so a value is never longer than its line.
*/
#include "envfile.h"
#include "base/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cur {
  const char *p, *end;
  char *err;
  size_t errlen;
};

static int fail(struct cur *c, const char *msg) {
  snprintf(c->err, c->errlen, "%s", msg);
  return -1;
}

static void skip_sp(struct cur *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
}

static int key_char(char ch, int first) {
  return isalpha((unsigned char)ch) || ch == '_' || (!first && (isdigit((unsigned char)ch) || ch == '.'));
}

/* After a value: only spaces and an optional comment. */
static int rest_ok(struct cur *c) {
  skip_sp(c);
  return c->p == c->end || *c->p == '#' ? 0 : fail(c, "unexpected text after the closing quote");
}

static int esc(char ch) {
  switch (ch) {
  case 'n': return '\n';
  case 't': return '\t';
  case 'r': return '\r';
  case '\\': case '"': case '$': return ch;
  default: return -1;
  }
}

static int quoted(struct cur *c, char *out) {
  char q = *c->p++;
  size_t n = 0;
  while (c->p < c->end && *c->p != q) {
    int e = q == '"' && *c->p == '\\' && c->p + 1 < c->end ? esc(c->p[1]) : -1;
    if (e >= 0) { out[n++] = (char)e; c->p += 2; }
    else if (q == '"' && *c->p == '\\' && c->p + 1 < c->end) { out[n++] = *c->p++; out[n++] = *c->p++; }
    else out[n++] = *c->p++;
  }
  out[n] = '\0';
  if (c->p == c->end) return fail(c, q == '"' ? "unterminated double quote" : "unterminated single quote");
  c->p++;
  return rest_ok(c);
}

static void bare(struct cur *c, char *out) {
  const char *s = c->p, *e = c->p;
  for (const char *p = s; p < c->end; p++) {
    if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) break;
    if (*p != ' ' && *p != '\t') e = p + 1;
  }
  memcpy(out, s, (size_t)(e - s));
  out[e - s] = '\0';
}

/* One line without its newline: 0 and *has set when it is an assignment, -1 when malformed. */
static int parse_line(struct cur *c, char *key, char *val, int *has) {
  *has = 0;
  skip_sp(c);
  if (c->p == c->end || *c->p == '#') return 0;
  if ((size_t)(c->end - c->p) > 7 && strncmp(c->p, "export", 6) == 0 && (c->p[6] == ' ' || c->p[6] == '\t')) {
    c->p += 6;
    skip_sp(c);
  }
  size_t n = 0;
  if (c->p == c->end || !key_char(*c->p, 1)) return fail(c, "expected a variable name (letters, digits, '_', '.')");
  while (c->p < c->end && key_char(*c->p, n == 0)) key[n++] = *c->p++;
  key[n] = '\0';
  skip_sp(c);
  if (c->p == c->end || *c->p != '=') return fail(c, "expected '=' after the variable name");
  c->p++;
  skip_sp(c);
  *has = 1;
  if (c->p < c->end && (*c->p == '"' || *c->p == '\'')) return quoted(c, val);
  bare(c, val);
  return 0;
}

int envfile_parse(const char *text, size_t len, envfile_fn fn, void *ud, int *line, char *err,
                  size_t errlen) {
  const char *p = text, *end = text + len;
  int rc = 0;
  *line = 0;
  for (int ln = 1; p < end && rc == 0; ln++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (n && p[n - 1] == '\r') n--;
    const char *le = p + n;
    char *key = xmalloc(n + 1), *val = xmalloc(n + 1);
    struct cur c = {p, le, err, errlen};
    int has;
    if (n && memchr(p, '\0', n)) rc = fail(&c, "a NUL byte");
    else rc = parse_line(&c, key, val, &has);
    if (rc == 0 && has && fn(ud, key, val, ln) != 0) rc = fail(&c, "stopped");
    if (rc) *line = ln;
    free(key);
    free(val);
    p = nl ? nl + 1 : end;
  }
  return rc;
}
