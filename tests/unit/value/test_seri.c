/* test_seri.c — copying values between lua_States (host/value/seri.c). */
#include "t.h"
#include "value/seri.h"
#include "value/errors.h"
#include "lua/lmod.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static lua_State *new_state(int with_errors) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (with_errors) errors_open(L);
  return L;
}

static int run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) == LUA_OK) return 1;
  printf("  lua error: %s\n", lua_tostring(L, -1));
  lua_pop(L, 1);
  return 0;
}

/* Evaluates `return <expr>` in A and leaves its values on A's stack; returns how many. */
static int eval(lua_State *A, const char *expr) {
  char code[4096];
  snprintf(code, sizeof code, "return %s", expr);
  int base = lua_gettop(A);
  if (luaL_loadstring(A, code) != LUA_OK || lua_pcall(A, 0, LUA_MULTRET, 0) != LUA_OK) {
    printf("  lua error: %s\n", lua_tostring(A, -1));
    lua_settop(A, base);
    return -1;
  }
  return lua_gettop(A) - base;
}

/* Packs the values of `expr` in A, unpacks them in B as the global table `got` (with
** got.n). Returns the number of values, or -1. */
static int xfer(lua_State *A, lua_State *B, const char *expr) {
  int n = eval(A, expr);
  if (n < 0) return -1;
  struct buf b;
  char err[256];
  buf_init(&b);
  int rc = seri_pack(A, -n, n, &b, err, sizeof err);
  lua_settop(A, 0);
  if (rc < 0) { printf("  pack: %s\n", err); buf_free(&b); return -1; }
  int m = seri_unpack(B, b.data, b.len);
  buf_free(&b);
  if (m < 0) return -1;
  lua_createtable(B, m, 1);
  lua_insert(B, 1);
  for (int i = m; i >= 1; i--) lua_rawseti(B, 1, i);
  lua_pushinteger(B, m);
  lua_setfield(B, 1, "n");
  lua_setglobal(B, "got");
  return m;
}

/* Packs `expr` in A expecting failure; returns the message (static storage) or NULL. */
static const char *pack_err(lua_State *A, const char *expr) {
  static char err[256];
  int n = eval(A, expr);
  if (n < 0) return NULL;
  struct buf b;
  buf_init(&b);
  buf_add(&b, "xy", 2);
  int top = lua_gettop(A);
  int rc = seri_pack(A, -n, n, &b, err, sizeof err);
  CHECK_INT(lua_gettop(A), top);             /* stack restored */
  CHECK_INT(b.len, 2);                       /* nothing appended */
  CHECK(b.data[2] == '\0');
  lua_settop(A, 0);
  buf_free(&b);
  return rc < 0 ? err : NULL;
}

TEST(scalars) {
  lua_State *A = new_state(1), *B = new_state(1);
  CHECK_INT(xfer(A, B, "nil, true, false, 0, 63, 64, -1, -64, math.maxinteger, math.mininteger,"
                       " 1.0, -0.0, 0/0, 1/0, -1/0, 1.5, 2^53, 123456789012"), 18);
  CHECK(run(B, "assert(got[1] == nil and got[2] == true and got[3] == false)\n"
               "for i, v in ipairs{0, 63, 64, -1, -64} do\n"
               "  assert(got[3 + i] == v and math.type(got[3 + i]) == 'integer', i) end\n"
               "assert(got[9] == math.maxinteger and math.type(got[9]) == 'integer')\n"
               "assert(got[9] == 9223372036854775807)\n"
               "assert(got[10] == math.mininteger and math.type(got[10]) == 'integer')\n"
               "assert(math.type(got[11]) == 'float' and got[11] == 1.0)\n"
               "assert(math.type(got[12]) == 'float' and 1/got[12] == -math.huge)\n"
               "assert(got[13] ~= got[13] and tostring(got[13]):find('nan'))\n"
               "assert(got[14] == math.huge and got[15] == -math.huge)\n"
               "assert(got[16] == 1.5 and math.type(got[17]) == 'float' and got[17] == 2^53)\n"
               "assert(got[18] == 123456789012 and math.type(got[18]) == 'integer')"));
  lua_close(A);
  lua_close(B);
}

TEST(strings) {
  lua_State *A = new_state(1), *B = new_state(1);
  const char *mk = "(function() local t = {} for i = 0, 255 do t[#t+1] = string.char(i) end"
                   " return table.concat(t) end)()";
  char expr[512];
  snprintf(expr, sizeof expr, "'', 'abc', 'a\\0b\\0', string.rep('x', 127), string.rep('y', 128),"
           " string.rep('z', 100000), %s", mk);
  CHECK_INT(xfer(A, B, expr), 7);
  CHECK(run(B, "assert(got[1] == '' and got[2] == 'abc')\n"
               "assert(got[3] == 'a\\0b\\0' and #got[3] == 4)\n"
               "assert(got[4] == string.rep('x', 127) and got[5] == string.rep('y', 128))\n"
               "assert(got[6] == string.rep('z', 100000))\n"
               "assert(#got[7] == 256) for i = 0, 255 do assert(got[7]:byte(i + 1) == i) end"));
  lua_close(A);
  lua_close(B);
}

TEST(tables) {
  lua_State *A = new_state(1), *B = new_state(1);
  CHECK_INT(xfer(A, B, "{1, 2, {3, {4}}, a = {b = {c = 'd'}}, [1.5] = 'f', [true] = 't',"
                       " [-3] = 'neg', [100] = 'far', [{k = 1}] = 'tk'}, {}, {nil, nil, 3}"), 3);
  CHECK(run(B, "local t = got[1]\n"
               "assert(t[1] == 1 and t[2] == 2 and t[3][1] == 3 and t[3][2][1] == 4)\n"
               "assert(math.type(t[1]) == 'integer')\n"
               "assert(t.a.b.c == 'd' and t[1.5] == 'f' and t[true] == 't')\n"
               "assert(t[-3] == 'neg' and t[100] == 'far')\n"
               "local tk for k, v in pairs(t) do if type(k) == 'table' then tk = k end end\n"
               "assert(tk and tk.k == 1 and t[tk] == 'tk')\n"
               "assert(next(got[2]) == nil)\n"
               "assert(got[3][3] == 3 and got[3][1] == nil)\n"
               "local n = 0 for _ in pairs(t) do n = n + 1 end assert(n == 9, n)"));
  lua_close(A);
  lua_close(B);
}

TEST(shared_table_copied_twice) {
  lua_State *A = new_state(1), *B = new_state(1);
  CHECK_INT(xfer(A, B, "(function() local s = {x = 1} return {s, s, k = s}, s end)()"), 2);
  CHECK(run(B, "local t = got[1]\n"
               "assert(t[1].x == 1 and t[2].x == 1 and t.k.x == 1 and got[2].x == 1)\n"
               "assert(t[1] ~= t[2] and t[1] ~= t.k and t[1] ~= got[2])"));
  lua_close(A);
  lua_close(B);
}

TEST(error_objects) {
  lua_State *A = new_state(1), *B = new_state(0);     /* B never called errors_open */
  CHECK_INT(xfer(A, B, "errors.new{message = 'gone', kind = errors.NOT_FOUND, retryable = false,"
                       " details = {id = 7, tags = {'a'}}},"
                       " {inner = errors.wrap(errors.new('x'), 'ctx')}, errors.new('plain')"), 3);
  CHECK(run(B, "local e = got[1]\n"
               "assert(type(e) == 'userdata' and tostring(e) == 'gone')\n"
               "assert(e:message() == 'gone' and e:kind() == 'NOT_FOUND')\n"
               "assert(e:retryable() == false)\n"
               "assert(e:details().id == 7 and e:details().tags[1] == 'a')\n"
               "assert(e:stack():find('traceback'))\n"
               "assert(got[2].inner:message() == 'ctx: x' and got[2].inner:kind() == 'UNKNOWN')\n"
               "assert(got[3]:retryable() == nil and got[3]:details() == nil)"));
  lua_getglobal(B, "got");
  lua_rawgeti(B, -1, 1);
  CHECK(errors_is(B, -1));
  CHECK_STR(errors_kind(B, -1), "NOT_FOUND");
  lua_settop(B, 0);
  /* C-created errors (no stack) too */
  errors_push(A, EK_TIMEOUT, "late");
  struct buf b;
  char err[128];
  buf_init(&b);
  CHECK_INT(seri_pack(A, 1, 1, &b, err, sizeof err), 0);
  CHECK_INT(seri_unpack(B, b.data, b.len), 1);
  CHECK_STR(errors_message(B, -1), "late");
  CHECK_STR(errors_kind(B, -1), "TIMEOUT");
  buf_free(&b);
  lua_close(A);
  lua_close(B);
}

static int dummy_cfn(lua_State *L) { return 0; }

TEST(refusals) {
  lua_State *A = new_state(1);
  CHECK_STR(pack_err(A, "print"), "cannot send a function (argument 1)");
  CHECK_STR(pack_err(A, "1, {cb = print}"), "cannot send a function (argument 2, field 'cb')");
  CHECK_STR(pack_err(A, "{a = {b = {1, 2, print}}}"),
            "cannot send a function (argument 1, field 'a.b[3]')");
  CHECK_STR(pack_err(A, "{[5] = {x = coroutine.create(print)}}"),
            "cannot send a thread (argument 1, field '[5].x')");
  CHECK_STR(pack_err(A, "{f = io.stdout}"), "cannot send a userdata (argument 1, field 'f')");
  CHECK_STR(pack_err(A, "(function() local t = {a = {}} t.a.b = t return t end)()"),
            "cannot send a table with a cycle (argument 1, field 'a.b')");
  CHECK_STR(pack_err(A, "(function() local t = {} t[1] = t return t end)()"),
            "cannot send a table with a cycle (argument 1, field '[1]')");
  CHECK_CONTAINS(pack_err(A, "{[print] = 1}"), "cannot send a function (argument 1, field '(key)')");
  CHECK_CONTAINS(pack_err(A, "errors.new{message = 'm', details = {f = print}}"),
                 "field ':details().f'");
  lua_pushlightuserdata(A, A);
  lua_setglobal(A, "LUD");
  CHECK_STR(pack_err(A, "{p = LUD}"), "cannot send a light userdata (argument 1, field 'p')");
  /* argument numbers are absolute stack indices */
  struct buf b;
  char err[256];
  buf_init(&b);
  lua_pushinteger(A, 1);
  lua_pushinteger(A, 2);
  lua_pushcfunction(A, dummy_cfn);
  CHECK_INT(seri_pack(A, 2, 2, &b, err, sizeof err), -1);
  CHECK_STR(err, "cannot send a function (argument 3)");
  CHECK_INT(b.len, 0);
  CHECK_INT(lua_gettop(A), 3);
  buf_free(&b);
  lua_close(A);
}

static const char *nest_expr(int depth, char *out, size_t cap) {
  snprintf(out, cap, "(function() local t = {} for i = 2, %d do t = {t} end return t end)()", depth);
  return out;
}

TEST(depth_limit) {
  lua_State *A = new_state(1), *B = new_state(1);
  char expr[256];
  CHECK_INT(xfer(A, B, nest_expr(128, expr, sizeof expr)), 1);
  CHECK(run(B, "local d, t = 0, got[1] while t do d = d + 1 t = t[1] end assert(d == 128, d)"));
  CHECK_CONTAINS(pack_err(A, nest_expr(129, expr, sizeof expr)), "nested deeper than 128");
  lua_close(A);
  lua_close(B);
}

TEST(multiple_and_empty) {
  lua_State *B = new_state(1);
  CHECK_INT(seri_unpack(B, NULL, 0), 0);
  CHECK_INT(lua_gettop(B), 0);
  lua_State *A = new_state(1);
  struct buf b;
  char err[64];
  buf_init(&b);
  CHECK_INT(seri_pack(A, 1, 0, &b, err, sizeof err), 0);
  CHECK_INT(b.len, 0);
  lua_pushinteger(A, 7);
  CHECK_INT(seri_pack(A, 1, 1, &b, err, sizeof err), 0);
  lua_pushliteral(A, "s");
  CHECK_INT(seri_pack(A, 2, 1, &b, err, sizeof err), 0);    /* appends */
  CHECK_INT(seri_unpack(B, b.data, b.len), 2);
  CHECK_INT(lua_tointeger(B, 1), 7);
  CHECK_STR(lua_tostring(B, 2), "s");
  buf_free(&b);
  lua_close(A);
  lua_close(B);
}

/* Unpacks possibly corrupt data: must return -1 with the stack untouched, or a count. */
static void unpack_any(lua_State *B, const void *data, size_t len, int *bad) {
  lua_settop(B, 0);
  int rc = seri_unpack(B, data, len);
  if (rc < 0) { CHECK_INT(lua_gettop(B), 0); (*bad)++; }
  else CHECK_INT(lua_gettop(B), rc);
  lua_settop(B, 0);
}

static void pack_expr(lua_State *A, const char *expr, struct buf *b) {
  char err[256];
  int n = eval(A, expr);
  buf_reset(b);
  CHECK_INT(seri_pack(A, -n, n, b, err, sizeof err), 0);
  lua_settop(A, 0);
}

TEST(corrupt_input) {
  lua_State *A = new_state(1), *B = new_state(1);
  const char *exprs[] = {
    "{1, 2.5, 'str', {a = {b = 'c'}}, [true] = false, long = string.rep('q', 300), n = -1000000}",
    "errors.new{message = 'm', kind = 'K', retryable = true, details = {x = {1, 2}}}",
    "{[{1}] = {2}, [3.5] = math.mininteger}",
  };
  struct buf b;
  buf_init(&b);
  for (size_t e = 0; e < countof(exprs); e++) {
    pack_expr(A, exprs[e], &b);
    int bad = 0;
    for (size_t k = 1; k < b.len; k++) {        /* every truncation of one value fails */
      char *copy = xmalloc(k);                  /* exact size so ASan sees overreads */
      memcpy(copy, b.data, k);
      unpack_any(B, copy, k, &bad);
      free(copy);
    }
    CHECK_INT(bad, (long long)b.len - 1);
    char *copy = xmalloc(b.len);
    for (size_t i = 0; i < b.len; i++) {        /* byte flips: no crash, consistent stack */
      static const unsigned char masks[] = {0x01, 0x80, 0xff, 0x7f, 0x40};
      for (size_t m = 0; m < countof(masks); m++) {
        memcpy(copy, b.data, b.len);
        copy[i] = (char)(copy[i] ^ masks[m]);
        unpack_any(B, copy, b.len, &bad);
      }
    }
    free(copy);
  }
  buf_free(&b);
  lua_close(A);
  lua_close(B);
}

TEST(corrupt_handcrafted) {
  lua_State *B = new_state(1);
  int bad = 0;
  static const unsigned char huge_arr[] = {0x06, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0x40};
  static const unsigned char huge_hash[] = {0x06, 0x00, 0xff, 0xff, 0xff, 0xff, 0x40, 0x40};
  static const unsigned char huge_str[] = {0x05, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'};
  static const unsigned char long_varint[] = {0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                              0xff, 0xff, 0xff, 0x01};
  static const unsigned char bad_tag[] = {0x08};
  static const unsigned char nil_key[] = {0x06, 0x00, 1, 0, 0, 0, 0x00, 0x40};
  static const unsigned char nan_key[] = {0x06, 0x00, 1, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0xf8,
                                          0x7f, 0x40};
  static const unsigned char err_types[] = {0x07, 0x40, 0x81, 'K', 0x00, 0x00, 0x00};
  const struct { const void *p; size_t n; } cases[] = {
    {huge_arr, sizeof huge_arr}, {huge_hash, sizeof huge_hash}, {huge_str, sizeof huge_str},
    {long_varint, sizeof long_varint}, {bad_tag, sizeof bad_tag}, {nil_key, sizeof nil_key},
    {nan_key, sizeof nan_key}, {err_types, sizeof err_types},
  };
  for (size_t i = 0; i < countof(cases); i++) unpack_any(B, cases[i].p, cases[i].n, &bad);
  CHECK_INT(bad, countof(cases));
  /* a depth bomb: 100000 nested empty tables */
  size_t n = 100000;
  unsigned char *bomb = xmalloc(n * 6 + 6);
  for (size_t i = 0; i <= n; i++) {
    unsigned char *p = bomb + i * 6;
    p[0] = 0x06; p[1] = 0x01; p[2] = p[3] = p[4] = p[5] = 0;
  }
  bad = 0;
  unpack_any(B, bomb, n * 6 + 6, &bad);
  CHECK_INT(bad, 1);
  free(bomb);
  lua_close(B);
}

static double rate(int64_t t0, long n) { return (double)n * 1e9 / (double)(clock_mono_ns() - t0); }

TEST(timing) {
  lua_State *A = new_state(1), *B = new_state(1);
  struct buf b;
  char err[128];
  long n = 1000000;
  buf_init(&b);
  lua_pushinteger(A, 12345);
  int64_t t0 = clock_mono_ns();
  for (long i = 0; i < n; i++) {
    buf_reset(&b);
    seri_pack(A, 1, 1, &b, err, sizeof err);
    seri_unpack(B, b.data, b.len);
    lua_settop(B, 0);
  }
  printf("  pack+unpack one integer:   %.0f /s\n", rate(t0, n));
  lua_settop(A, 0);
  eval(A, "{id = 42, name = 'alice', ok = true, score = 1.5, tags = {'a', 'b'}}");
  t0 = clock_mono_ns();
  for (long i = 0; i < n; i++) {
    buf_reset(&b);
    seri_pack(A, 1, 1, &b, err, sizeof err);
    seri_unpack(B, b.data, b.len);
    lua_settop(B, 0);
  }
  printf("  pack+unpack small table:   %.0f /s (%zu bytes)\n", rate(t0, n), b.len);
  buf_free(&b);
  lua_close(A);
  lua_close(B);
}

int main(void) {
  RUN(scalars);
  RUN(strings);
  RUN(tables);
  RUN(shared_table_copied_twice);
  RUN(error_objects);
  RUN(refusals);
  RUN(depth_limit);
  RUN(multiple_and_empty);
  RUN(corrupt_input);
  RUN(corrupt_handcrafted);
  RUN(timing);
  return T_DONE();
}
