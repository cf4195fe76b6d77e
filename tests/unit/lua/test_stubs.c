/* test_stubs.c — host/lua/stubs.c: the embedded description and generator run, the files
** land where asked (parents made), a path that cannot be written is an error with the path,
** the README table and the list come out, and .luarc.json is written once and then kept. */
#include "t.h"
#include "lua/stubs.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

static char *print_to_string(enum stubs_output what, int *rc) {
  char *text = NULL, err[256];
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  *rc = stubs_print(f, what, err, sizeof err);
  fclose(f);
  return text;
}

static char tmp[] = "/tmp/taskhost-test-stubs-XXXXXX";

TEST(writes_every_file_making_parents) {
  char dir[256], path[300], err[256];
  snprintf(dir, sizeof dir, "%s/a/b", tmp);
  int n = stubs_write(dir, err, sizeof err);
  CHECK(n >= 20);
  snprintf(path, sizeof path, "%s/time.lua", dir);
  const char *t = slurp(path);
  CHECK(t && strncmp(t, "---@meta time\n", 14) == 0);
  CHECK_CONTAINS(t, "function time.sleep(d) end");
  CHECK_CONTAINS(t, "\nreturn time\n");
  snprintf(path, sizeof path, "%s/process.lua", dir);
  CHECK_CONTAINS(slurp(path), "\nprocess = {}\n");            /* a global, not a local */
  snprintf(path, sizeof path, "%s/globals.lua", dir);
  CHECK_CONTAINS(slurp(path), "function unpack(list, i, j) end");
  CHECK_INT(stubs_write(dir, err, sizeof err), n);            /* again: replaced, same count */
}

TEST(unwritable_dir_is_an_error_naming_it) {
  char file[256], dir[300], err[256] = "";
  snprintf(file, sizeof file, "%s/plain", tmp);
  FILE *f = fopen(file, "w");
  fclose(f);
  snprintf(dir, sizeof dir, "%s/sub", file);
  CHECK_INT(stubs_write(dir, err, sizeof err), -1);
  CHECK_CONTAINS(err, file);
  CHECK_CONTAINS(err, "Not a directory");
  CHECK_INT(stubs_write("", err, sizeof err), -1);
  CHECK_CONTAINS(err, "No such file or directory");
}

TEST(readme_and_list) {
  int rc;
  char *readme = print_to_string(STUBS_README, &rc);
  CHECK_INT(rc, 0);
  CHECK(readme && strncmp(readme, "| module | what works |\n|---|---|\n| `process` | ", 48) == 0);
  CHECK_CONTAINS(readme, "\n| `sql` | `get(id)` → DB");
  free(readme);
  char *list = print_to_string(STUBS_LIST, &rc);
  CHECK_INT(rc, 0);
  CHECK_CONTAINS(list, "module\ttime\tsleep\n");
  CHECK_CONTAINS(list, "global\tprocess\tregistry.register\n");
  CHECK_CONTAINS(list, "module\tlogger\t:info\n");
  CHECK_CONTAINS(list, "class\tTime\t:unix\n");
  CHECK_CONTAINS(list, "class\thttp_client.Response\t.status_code\n");
  CHECK_CONTAINS(list, "function\t_G\tunpack\n");
  free(list);
}

TEST(luarc_written_once_then_kept) {
  char path[256], err[256];
  snprintf(path, sizeof path, "%s/.luarc.json", tmp);
  CHECK_INT(stubs_write_luarc(path, "lib \"q\"", err, sizeof err), 0);
  const char *t = slurp(path);
  CHECK_CONTAINS(t, "\"runtime.version\": \"Lua 5.4\"");
  CHECK_CONTAINS(t, "\"workspace.library\": [\"lib \\\"q\\\"\"]");
  CHECK_INT(stubs_write_luarc(path, "other", err, sizeof err), 1);
  CHECK_CONTAINS(slurp(path), "lib \\\"q\\\"");
  snprintf(path, sizeof path, "%s/none/.luarc.json", tmp);
  CHECK_INT(stubs_write_luarc(path, "x", err, sizeof err), -1);
  CHECK_CONTAINS(err, "No such file or directory");
}

int main(void) {
  if (!mkdtemp(tmp)) return 1;
  RUN(writes_every_file_making_parents);
  RUN(unwritable_dir_is_an_error_naming_it);
  RUN(readme_and_list);
  RUN(luarc_written_once_then_kept);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (system(cmd) != 0) return 1;
  return T_DONE();
}
