/* Fuzzes the *.registry.lua reader (reg_read_lua in reg_read.c): a chunk run in the sandbox
** (instruction and memory limits) whose returned table becomes a val tree. Any chunk must
** come back — a tree or an error — within the limits; a hang shows as a libFuzzer timeout. */
#include "registry/reg_internal.h"
#include "value/val.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size ? size : 1);
  memcpy(text, data, size);
  int line = -1;
  char err[512];
  struct reg_budget b;
  reg_budget_init(&b, NULL);
  struct val *root = reg_read_lua(text, size, "fuzz.registry.lua", &b, &line, err, sizeof err);
  if (!root && (line < 0 || !memchr(err, '\0', sizeof err))) abort();
  val_free(root);
  free(text);
  return 0;
}
