/* Fuzzes envfile_parse (registry/envfile.c, a `.env` file's text) with arbitrary bytes: every
** key it reports is a valid key and values are NUL-terminated within the input's size; a
** refusal names a line inside the text and leaves a terminated message. */
#include "registry/envfile.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct seen { size_t n, len; int last_line; };

static int each(void *ud, const char *key, const char *value, int line) {
  struct seen *s = ud;
  size_t k = strlen(key);
  if (!k || !(key[0] == '_' || ((key[0] | 32) >= 'a' && (key[0] | 32) <= 'z'))) abort();
  if (k > s->len || strlen(value) > s->len) abort();
  if (line < s->last_line || line < 1) abort();     /* file order */
  s->last_line = line;
  s->n++;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct seen s = {0, size, 0};
  int line = 0;
  char err[256];
  memset(err, 'x', sizeof err);
  if (envfile_parse((const char *)data, size, each, &s, &line, err, sizeof err) != 0) {
    if (!memchr(err, '\0', sizeof err) || line < 1) abort();
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    if ((size_t)line > lines) abort();
  }
  return 0;
}
