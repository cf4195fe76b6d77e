/* test_json.c — JSON with wippy semantics (host/value/json.c), C API and Lua module. */
#include "t.h"
#include "value/json.h"
#include "value/errors.h"
#include "lua/lmod.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  errors_open(L);
  luaopen_taskhost_json(L);
  lua_setglobal(L, "json");
  return L;
}

static int run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) == LUA_OK) return 1;
  printf("  lua error: %s\n", lua_tostring(L, -1));
  lua_pop(L, 1);
  return 0;
}

/* Runs a chunk expected to raise; returns 1 if it did. */
static int raises(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) == LUA_OK) return 0;
  lua_pop(L, 1);
  return 1;
}

/* Encodes the value of the Lua expression with the C API. Returns a static string, or
** "ERR: <message>". */
static const char *enc(lua_State *L, const char *expr) {
  static char out[8192];
  char code[2048], err[256];
  snprintf(code, sizeof code, "return %s", expr);
  if (luaL_dostring(L, code) != LUA_OK) {
    snprintf(out, sizeof out, "LUA: %s", lua_tostring(L, -1));
    lua_settop(L, 0);
    return out;
  }
  struct buf b;
  buf_init(&b);
  int top = lua_gettop(L);
  if (json_encode(L, -1, &b, err, sizeof err) < 0) snprintf(out, sizeof out, "ERR: %s", err);
  else snprintf(out, sizeof out, "%s", b.data);
  CHECK_INT(lua_gettop(L), top);
  buf_free(&b);
  lua_settop(L, 0);
  return out;
}

/* Decodes with the C API into the global `v`; returns NULL or the error message. */
static const char *dec(lua_State *L, const char *s, size_t len) {
  static char err[256];
  int top = lua_gettop(L);
  if (json_decode(L, s, len, err, sizeof err) < 0) {
    CHECK_INT(lua_gettop(L), top);
    return err;
  }
  CHECK_INT(lua_gettop(L), top + 1);
  lua_setglobal(L, "v");
  return NULL;
}

#define DEC(L, s) dec(L, s, strlen(s))

TEST(decode_basics) {
  lua_State *L = new_state();
  CHECK(DEC(L, "{\"d\":5,\"f\":1.5,\"s\":\"x\\u00e9\",\"a\":[1,2,3],\"b\":true,\"o\":{\"k\":false}}") == NULL);
  CHECK(run(L, "assert(v.d == 5 and math.type(v.d) == 'integer')\n"
               "assert(string.format('%d', v.d) == '5' and tostring(v.d) == '5')\n"
               "assert(v.f == 1.5 and math.type(v.f) == 'float')\n"
               "assert(v.s == 'x\\xc3\\xa9' and v.b == true and v.o.k == false)\n"
               "assert(#v.a == 3 and v.a[3] == 3 and math.type(v.a[1]) == 'integer')"));
  lua_close(L);
}

TEST(decode_numbers) {
  lua_State *L = new_state();
  CHECK(run(L, "local function d(s) return (json.decode(s)) end\n"
               "assert(math.type(d('-7')) == 'integer' and d('-7') == -7)\n"
               "assert(math.type(d('1e3')) == 'integer' and d('1e3') == 1000)\n"
               "assert(math.type(d('9007199254740992')) == 'integer')\n"
               "assert(d('9007199254740992') == 9007199254740992)\n"
               "assert(math.type(d('-9007199254740992')) == 'integer')\n"
               "assert(math.type(d('18014398509481984')) == 'float')\n"   /* 2^54: beyond 2^53 */
               "assert(math.type(d('1e300')) == 'float')\n"
               "assert(math.type(d('0.5')) == 'float' and d('0.5') == 0.5)\n"
               /* documented limitation: integral floats become integers */
               "assert(math.type(d('5.0')) == 'integer' and d('5.0') == 5)"));
  lua_close(L);
}

TEST(decode_null) {
  lua_State *L = new_state();
  CHECK(DEC(L, "null") == NULL);
  CHECK(run(L, "assert(v == nil)"));
  CHECK(DEC(L, "{\"a\":null,\"b\":1,\"c\":{\"d\":null}}") == NULL);
  CHECK(run(L, "assert(v.a == nil and v.b == 1 and next(v.c) == nil)\n"
               "local n = 0 for _ in pairs(v) do n = n + 1 end assert(n == 2)"));
  CHECK(DEC(L, "[1,null,3]") == NULL);                /* array nulls become holes */
  CHECK(run(L, "assert(v[1] == 1 and v[2] == nil and v[3] == 3)\n"
               "for _, x in pairs(v) do assert(type(x) ~= 'userdata') end"));
  CHECK(run(L, "assert(json.decode('[null]')[1] == nil)"));
  lua_close(L);
}

TEST(decode_invalid) {
  lua_State *L = new_state();
  const char *bad[] = {"{", "[1,]", "", "nul", "NaN", "Infinity", "0x10", "{\"a\" 1}", "\"abc",
                       "[1] x", "{1:2}"};
  for (size_t i = 0; i < countof(bad); i++) {
    const char *e = DEC(L, bad[i]);
    CHECK_CONTAINS(e, "invalid JSON");
  }
  CHECK_CONTAINS(DEC(L, "[1,]"), "at character");
  printf("  e.g. %s\n", DEC(L, "{\"a\" 1}"));
  CHECK_CONTAINS(dec(L, "1\0 2", 4), "NUL");
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

TEST(decode_depth) {
  lua_State *L = new_state();
  char s[600];
  memset(s, '[', 128);
  memset(s + 128, ']', 128);
  s[256] = '\0';
  CHECK(DEC(L, s) == NULL);
  memset(s, '[', 129);
  memset(s + 129, ']', 129);
  s[258] = '\0';
  CHECK_CONTAINS(DEC(L, s), "invalid JSON");
  lua_close(L);
}

TEST(encode_scalars) {
  lua_State *L = new_state();
  CHECK_STR(enc(L, "nil"), "null");
  CHECK_STR(enc(L, "true"), "true");
  CHECK_STR(enc(L, "false"), "false");
  CHECK_STR(enc(L, "0"), "0");
  CHECK_STR(enc(L, "-42"), "-42");
  CHECK_STR(enc(L, "math.maxinteger"), "9223372036854775807");
  CHECK_STR(enc(L, "math.mininteger"), "-9223372036854775808");
  CHECK_STR(enc(L, "9007199254740993"), "9007199254740993");
  CHECK_STR(enc(L, "1.5"), "1.5");
  CHECK_STR(enc(L, "0.1"), "0.1");
  CHECK_STR(enc(L, "3.0"), "3");                   /* integral floats print without a fraction */
  CHECK_STR(enc(L, "-2.5e-7"), "-2.5e-07");
  CHECK_STR(enc(L, "1e300"), "1e+300");
  CHECK_STR(enc(L, "1/3"), "0.3333333333333333");
  CHECK_STR(enc(L, "0/0"), "null");
  CHECK_STR(enc(L, "1/0"), "null");
  CHECK_STR(enc(L, "-1/0"), "null");
  CHECK(run(L, "for _, x in ipairs{0.1, 1/3, 2/3, 1e-300, 123456.789, 2^60 + 0.0, 5e-324} do\n"
               "  assert(tonumber(json.encode(x)) == x, x) end"));
  lua_close(L);
}

TEST(encode_strings) {
  lua_State *L = new_state();
  CHECK_STR(enc(L, "'plain'"), "\"plain\"");
  CHECK_STR(enc(L, "''"), "\"\"");
  CHECK_STR(enc(L, "'q\"b\\\\s/'"), "\"q\\\"b\\\\s/\"");
  CHECK_STR(enc(L, "'a\\nb\\tc\\rd'"), "\"a\\nb\\tc\\rd\"");
  CHECK_STR(enc(L, "'\\0\\1\\31\\127'"), "\"\\u0000\\u0001\\u001f\x7f\"");
  CHECK_STR(enc(L, "'caf\\xc3\\xa9'"), "\"caf\xc3\xa9\"");
  CHECK(run(L, "local s = ''; for i = 0, 255 do s = s .. string.char(i) end\n"
               "assert(json.decode(json.encode(s)) == s)"));
  /* Every escaped byte at every offset of a word, and around the 4096-byte chunk edge,
  ** against an escaper written in Lua. */
  CHECK(run(L, "local function ref(s)\n"
               "  local short = {['\"'] = '\\\\\"', ['\\\\'] = '\\\\\\\\', ['\\n'] = '\\\\n',\n"
               "                 ['\\r'] = '\\\\r', ['\\t'] = '\\\\t'}\n"
               "  return '\"' .. s:gsub('[%c\"\\\\]', function(c)\n"
               "    if c:byte() == 127 then return c end\n"
               "    return short[c] or string.format('\\\\u%04x', c:byte()) end) .. '\"'\n"
               "end\n"
               "for _, c in ipairs{'\"', '\\\\', '\\n', '\\0', '\\31', ' ', '\\127', '\\200'} do\n"
               "  for pos = 1, 21 do\n"
               "    local s = ('a'):rep(pos - 1) .. c .. ('b'):rep(21 - pos)\n"
               "    assert(json.encode(s) == ref(s), s) end\n"
               "  for _, at in ipairs{4094, 4095, 4096, 4097, 8192} do\n"
               "    local s = ('x'):rep(at - 1) .. c .. ('y'):rep(9000 - at)\n"
               "    assert(json.encode(s) == ref(s), at) end\n"
               "end"));
  lua_close(L);
}

TEST(encode_tables) {
  lua_State *L = new_state();
  CHECK_STR(enc(L, "{}"), "[]");
  CHECK_STR(enc(L, "{1, 2, 3}"), "[1,2,3]");
  CHECK_STR(enc(L, "{a = 1}"), "{\"a\":1}");
  CHECK_STR(enc(L, "{a = {b = {}}}"), "{\"a\":{\"b\":[]}}");
  CHECK_STR(enc(L, "{{}, {x = 'y'}, {true, false}}"), "[[],{\"x\":\"y\"},[true,false]]");
  CHECK_STR(enc(L, "{['a\"b'] = 1}"), "{\"a\\\"b\":1}");
  CHECK_STR(enc(L, "(function() local s = {1} return {s, s} end)()"), "[[1],[1]]");
  CHECK(run(L, "local s = json.encode{a = 1, b = 'x', c = true}\n"
               "local t = json.decode(s) assert(t.a == 1 and t.b == 'x' and t.c == true)"));
  lua_close(L);
}

TEST(encode_refusals) {
  lua_State *L = new_state();
  const char *mixed = "ERR: cannot encode a table with mixed or sparse keys";
  CHECK_STR(enc(L, "{1, a = 2}"), mixed);
  CHECK_STR(enc(L, "{1, nil, 3}"), mixed);
  CHECK_STR(enc(L, "{[2] = 1}"), mixed);
  CHECK_STR(enc(L, "{[0] = 1}"), mixed);
  CHECK_STR(enc(L, "{[1.5] = 1}"), mixed);
  CHECK_STR(enc(L, "{[true] = 1}"), mixed);
  CHECK_STR(enc(L, "{a = 1, [5] = 2}"), mixed);
  CHECK_STR(enc(L, "{[5] = 2, a = 1, b = 2, c = 3}"), mixed);
  CHECK_STR(enc(L, "{a = 1, b = {x = 1, [1] = 2}}"), mixed);
  CHECK_STR(enc(L, "{x = {1, [3] = 3}}"), mixed);
  CHECK_STR(enc(L, "(function() local t = {} t.self = t return t end)()"),
            "ERR: cannot encode a table with a cycle");
  CHECK_STR(enc(L, "(function() local t = {{}} t[1][1] = t return t end)()"),
            "ERR: cannot encode a table with a cycle");
  char deep[257];
  memset(deep, '[', 128);
  memset(deep + 128, ']', 128);
  deep[256] = '\0';
  CHECK_STR(enc(L, "(function() local t = {} for i = 2, 128 do t = {t} end return t end)()"), deep);
  CHECK_STR(enc(L, "(function() local t = {} for i = 2, 129 do t = {t} end return t end)()"),
            "ERR: cannot encode a table nested deeper than 128 levels");
  lua_close(L);
}

TEST(encode_special_values) {
  lua_State *L = new_state();
  CHECK_STR(enc(L, "errors.new('boom')"), "\"boom\"");
  CHECK_STR(enc(L, "{e = errors.new{message = 'a\"b', kind = errors.INVALID}}"), "{\"e\":\"a\\\"b\"}");
  CHECK_STR(enc(L, "{print}"), "[null]");
  CHECK_STR(enc(L, "{f = io.stdout}"), "{\"f\":null}");
  CHECK_STR(enc(L, "coroutine.create(print)"), "null");
  CHECK_STR(enc(L, "setmetatable({}, {__index = function() return 1 end})"), "[]");
  lua_close(L);
}

TEST(encode_buffer_contract) {
  lua_State *L = new_state();
  struct buf b;
  char err[128];
  buf_init(&b);
  buf_adds(&b, "x=");
  lua_pushinteger(L, 7);
  CHECK_INT(json_encode(L, -1, &b, err, sizeof err), 0);
  CHECK_STR(b.data, "x=7");
  CHECK(run(L, "T = {1, a = 1}"));
  lua_getglobal(L, "T");
  CHECK_INT(json_encode(L, -1, &b, err, sizeof err), -1);
  CHECK_STR(b.data, "x=7");                          /* failure appends nothing */
  CHECK_INT(b.len, 3);
  CHECK_INT(lua_gettop(L), 2);
  buf_free(&b);
  lua_close(L);
}

TEST(round_trips) {
  lua_State *L = new_state();
  const char *docs[] = {
    "[1,2.5,\"s\",true,false,[],{\"k\":[1,{\"z\":\"\\\"\\n\"}]}]",
    "{\"big\":9007199254740991}",
    "[-1,0,1e+300,\"caf\xc3\xa9\",\"a/b\"]",
  };
  for (size_t i = 0; i < countof(docs); i++) {
    CHECK(DEC(L, docs[i]) == NULL);
    CHECK_STR(enc(L, "v"), docs[i]);
  }
  CHECK(DEC(L, "{}") == NULL);                       /* §9 item 13: {} re-encodes as [] */
  CHECK_STR(enc(L, "v"), "[]");
  CHECK(DEC(L, "{\"a\":null}") == NULL);
  CHECK_STR(enc(L, "v"), "[]");
  lua_close(L);
}

TEST(lua_module) {
  lua_State *L = new_state();
  CHECK(run(L, "local v = json.decode('{\"d\":5}')\n"
               "assert(math.type(v.d) == 'integer' and string.format('%d', v.d) == '5')\n"
               "local x, err = json.decode('{bad')\n"
               "assert(x == nil and err:kind() == errors.INTERNAL)\n"
               "assert(err:message():find('invalid JSON'))\n"
               "assert(json.decode('null') == nil)\n"
               "assert(json.encode({}) == '[]' and json.encode(nil) == 'null' and json.encode() == 'null')\n"
               "assert(json.encode(9007199254740993) == '9007199254740993')\n"
               "local s, e2 = json.encode({1, a = 1})\n"
               "assert(s == nil and e2:kind() == 'INTERNAL' and e2:message():find('mixed'))\n"
               "local t = {} t.t = t\n"
               "local s2, e3 = json.encode(t) assert(s2 == nil and e3:message():find('cycle'))\n"
               "assert(json.encode(errors.new('m')) == '\"m\"')"));
  CHECK(raises(L, "json.decode(5)"));                  /* misuse raises */
  CHECK(raises(L, "json.decode()"));
  CHECK(raises(L, "json.decode({})"));
  lua_close(L);
}

TEST(many_states_and_calls) {
  lua_State *A = new_state(), *B = new_state();
  CHECK(run(A, "for i = 1, 1000 do assert(json.decode('[' .. i .. ']')[1] == i) end"));
  CHECK(run(B, "assert(json.decode('{\"k\":[true]}').k[1] == true)"));
  lua_State *C = luaL_newstate();                    /* bare state: C API only */
  CHECK(DEC(C, "[1,{\"a\":2}]") == NULL);
  lua_getglobal(C, "v");
  CHECK(lua_istable(C, -1));
  lua_close(A);
  lua_close(B);
  lua_close(C);
}

TEST(timing) {
  lua_State *L = new_state();
  CHECK(run(L, "local t0 = os.clock() local doc = {id = 42, name = 'alice', tags = {'a', 'b'},"
               " score = 1.5, ok = true}\n"
               "for i = 1, 200000 do json.encode(doc) end\n"
               "local t1 = os.clock()\n"
               "local s = json.encode(doc) for i = 1, 200000 do json.decode(s) end\n"
               "local t2 = os.clock()\n"
               "print(string.format('  encode %.0f /s, decode %.0f /s', 200000 / (t1 - t0),"
               " 200000 / (t2 - t1)))"));
  lua_close(L);
}

int main(void) {
  RUN(decode_basics);
  RUN(decode_numbers);
  RUN(decode_null);
  RUN(decode_invalid);
  RUN(decode_depth);
  RUN(encode_scalars);
  RUN(encode_strings);
  RUN(encode_tables);
  RUN(encode_refusals);
  RUN(encode_special_values);
  RUN(encode_buffer_contract);
  RUN(round_trips);
  RUN(lua_module);
  RUN(many_states_and_calls);
  RUN(timing);
  return T_DONE();
}
