/*
** test_strip.c — unit tests for host/registry/strip.c (Luau-style annotation stripping).
**
** Most form tests use a marked source: text between backticks is annotation. The marks are
** removed to build the input, and replaced by spaces (newlines kept) to build the expected
** output, so each test shows exactly which bytes must disappear. A source with no marks
** must come back byte-for-byte unchanged. Every strip also goes through strip_exact(),
** which copies the input into an exactly-sized, non-NUL-terminated buffer (so ASan sees any
** over-read) and checks the invariants: same length, same newlines, only spaces introduced.
*/
#include "t.h"
#include "registry/strip.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/* ---- helpers ------------------------------------------------------------ */

/* Strips src[0..len) from an exact-size copy; checks the output invariants on success. */
static int strip_exact(const char *src, size_t len, char **out, char *err, size_t errlen) {
  char *in = malloc(len ? len : 1);
  memcpy(in, src, len);
  *out = (char *)"untouched";
  int rc = strip_types(in, len, out, err, errlen);
  if (rc == 0) {
    CHECK((*out)[len] == '\0');
    for (size_t i = 0; i < len; i++) {
      char a = src[i], b = (*out)[i];
      if (a == b) continue;
      CHECK(b == ' ');                       /* only spaces are introduced... */
      CHECK(a != '\n' && a != '\r');         /* ...and never over a line break */
      if (b != ' ' || a == '\n' || a == '\r') break;
    }
  } else {
    CHECK(*out == NULL);
    CHECK_CONTAINS(err, "line ");
  }
  free(in);
  return rc;
}

/* Builds input and expected output from a backtick-marked source (see file comment). */
static void unmark(const char *m, char **in, char **exp) {
  size_t n = strlen(m), k = 0;
  int inside = 0;
  *in = calloc(n + 1, 1);
  *exp = calloc(n + 1, 1);
  for (size_t i = 0; i < n; i++) {
    if (m[i] == '`') { inside = !inside; continue; }
    (*in)[k] = m[i];
    (*exp)[k++] = (inside && m[i] != '\n' && m[i] != '\r') ? ' ' : m[i];
  }
}

/* Strips the marked source and checks the result against the marks. */
#define CHECK_ANN(marked) do { \
    char *in_, *exp_, *out_ = NULL, err_[200] = ""; \
    unmark((marked), &in_, &exp_); \
    int rc_ = strip_exact(in_, strlen(in_), &out_, err_, sizeof err_); \
    CHECK_INT(rc_, 0); \
    if (rc_ == 0) { CHECK_STR(out_, exp_); free(out_); } else printf("  err: %s\n", err_); \
    free(in_); free(exp_); \
  } while (0)

/* Plain Lua: must pass through unchanged. */
#define CHECK_PLAIN(src) CHECK_ANN(src)

/* Must fail with "line N: ..." where N is `line`. */
#define CHECK_FAILS(src, line) do { \
    char *out_ = NULL, err_[200] = "", want_[32]; \
    int rc_ = strip_exact((src), strlen(src), &out_, err_, sizeof err_); \
    CHECK_INT(rc_, -1); \
    snprintf(want_, sizeof want_, "line %d: ", (line)); \
    CHECK(strncmp(err_, want_, strlen(want_)) == 0); \
    if (strncmp(err_, want_, strlen(want_)) != 0) printf("  err: %s\n", err_); \
    if (rc_ == 0) free(out_); \
  } while (0)

/* Strips `src`, loads it as chunk "=t" and runs it; returns the first result as a string
** ("nil" if none) or "ERR: <message>" for strip/compile/runtime failures. */
static const char *eval(const char *src, char *res, size_t n) {
  char *out = NULL, err[200] = "";
  if (strip_exact(src, strlen(src), &out, err, sizeof err) != 0) {
    snprintf(res, n, "ERR: strip: %s", err);
    return res;
  }
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, "function require(name) return setmetatable({}, "
                       "{__index = function() return function() end end}) end"))
    CHECK(!"require stub failed");
  int rc = luaL_loadbuffer(L, out, strlen(out), "=t");
  if (rc == LUA_OK) rc = lua_pcall(L, 0, 1, 0);
  snprintf(res, n, "%s%s", rc == LUA_OK ? "" : "ERR: ", luaL_tolstring(L, -1, NULL));
  lua_close(L);
  free(out);
  return res;
}

/* ---- type aliases ------------------------------------------------------- */

TEST(alias_simple) {
  CHECK_ANN("`type Id = string`\nlocal x = 1\n");
  CHECK_ANN("local x = 1 `type Id = string | number`\n");
  CHECK_ANN("`type Mode = \"a\" | \"b\"`\n");
  CHECK_ANN("`type Cb = (msg: string, n: number?) -> (boolean, string?)`\nreturn 1\n");
  CHECK_ANN("x = 1; `type A = B`; y = 2");
  CHECK_ANN("do `type A = B` end");
}

TEST(alias_export_generic) {
  CHECK_ANN("`export type Map<K, V> = {[K]: V}`\n");
  CHECK_ANN("`export type Pair<T> = {first: T, second: T}`\nreturn {}\n");
  CHECK_ANN("`type List<T = string> = {T}`\n");
  CHECK_ANN("`type Nested = Map<string, Array<number>>`\nlocal y = 2\n");
}

TEST(alias_multiline) {
  CHECK_ANN("`type Stats = {\n    messages: number,\n    workers_spawned: number,\n}`\n"
            "local stats = { messages = 0 }\n");
  CHECK_ANN("`type Deep = {\n  a: { b: {string}, c: {[string]: {x: number?}} },\n"
            "  -- a comment: with colon\n  d: (number) -> (),\n}`\nreturn 1\n");
  CHECK_ANN("`type Props = {\n  read id: number,\n  write name: string;\n  tag?: string,\n"
            "  [number]: boolean,\n  read: number,\n}`\n");
  CHECK_ANN("`type A = {x: number}` `type B = {y: A}`\nreturn 1");
}

TEST(type_is_not_keyword) {
  CHECK_PLAIN("local type = 1\nprint(type(x))\nt.type = 2\nx = type\nreturn type\n");
  CHECK_PLAIN("local t = { type = \"a\", [type] = 1 }\ntype(x)\ntype \"s\"\ntype {1}\n");
  CHECK_PLAIN("x = type\nName = 1\n");               /* valid Lua: two statements */
  CHECK_PLAIN("x = a.type\nName = 1\nlocal type\nName = 2\ny = not type\nZ = 3\n");
  CHECK_PLAIN("if type(v) == \"table\" then return type end\nlocal export = 1\nexport = type\n");
  CHECK_PLAIN("function type(x) return x end\nfunction m.type(a) end\nobj:type(1)\n");
}

/* ---- locals and for ------------------------------------------------------ */

TEST(local_annotations) {
  CHECK_ANN("local x`: number` = 5\n");
  CHECK_ANN("local a`: T`, b`: U`\n");
  CHECK_ANN("local a`: T`, b`: U` = 1, 2\n");
  CHECK_ANN("local x`: {string}` = {}\n");
  CHECK_ANN("local x`:number`=5");
  CHECK_ANN("local x`: number?`\nlocal y = x\n");
  CHECK_ANN("local r`: {[string]: any}` = {}\n");
  CHECK_ANN("local f`: (number) -> string` = tostring\n");
  CHECK_ANN("local x`: T`\n(print)(x)\n");
  CHECK_ANN("local x`: number`\r\n= 5\r\n");
  CHECK_ANN("local x <const>`: number` = 5\n");
}

TEST(local_attribs_kept) {
  CHECK_PLAIN("local x <const> = 5\nlocal f <close> = nil\nlocal a <const>, b = 1, 2\n");
  CHECK_PLAIN("local x<const>=5\n");
}

TEST(for_annotations) {
  CHECK_ANN("for i`: number` = 1, 10 do end\n");
  CHECK_ANN("for k`: string`, v`: any` in pairs(t) do end\n");
  CHECK_PLAIN("for k, v in pairs(t) do print(k:upper(), v) end\nfor i = 1, 3 do end\n");
}

/* ---- functions ----------------------------------------------------------- */

TEST(function_params) {
  CHECK_ANN("function f(a`: string`, b`: number?`, ...`: any`) end\n");
  CHECK_ANN("local function f(x`: T`) return x end\n");
  CHECK_ANN("local g = function(a`: T`, b) return a end\n");
  CHECK_ANN("function obj:method(a`: T`) end\n");
  CHECK_ANN("function a.b.c(x`: T`) end\n");
  CHECK_ANN("function a.b:c(x`: T`, y`: {T}`) end\n");
  CHECK_ANN("f(function(cb`: (err: string?) -> ()`) end)\n");
  CHECK_ANN("local t = { go = function(self`: Obj`, n`: number`) return n end }\n");
  CHECK_ANN("function f(\n  a`: string`,\n  b`: {\n    x: number,\n  }`\n) end\n");
}

TEST(function_returns) {
  CHECK_ANN("function f()`: T` end\n");
  CHECK_ANN("function f()`: (string, string)` return \"a\", \"b\" end\n");
  CHECK_ANN("function f()`: T?` end\n");
  CHECK_ANN("function f()`: ...any` end\n");
  CHECK_ANN("function f()`: {[string]: integer}` return {} end\n");
  CHECK_ANN("function f()`: () -> ()` end\n");
  CHECK_ANN("function f()` : T` local x = 1 end\n");
  CHECK_ANN("function f()`: T`\n  return 1\nend\n");
  CHECK_ANN("function f()`: (A, B)`\n  (g)()\nend\n");
  CHECK_ANN("function f()`: A | B`\n  return nil\nend\n");
  CHECK_ANN("local function h(msg`: Message`, n`: number?`)`: (boolean, string?)`\n"
            "  return true, nil\nend\n");
}

TEST(function_generics) {
  CHECK_ANN("function f`<T>`(x`: T`)`: T` return x end\n");
  CHECK_ANN("local function g`<K, V>`(m`: Map<K, V>`)`: V?` end\n");
  CHECK_ANN("function m.f`<T...>`(...`: T...`)`: T...` end\n");
  CHECK_ANN("local id = function`<T>`(x`: T`)`: T` return x end\n");
}

/* ---- type expressions ---------------------------------------------------- */

TEST(type_expressions) {
  CHECK_ANN("local x`: mod.Type` = 1");
  CHECK_ANN("local x`: a.b.C<number>` = 1");
  CHECK_ANN("local x`: Map<string, Array<number>>` = 1");
  CHECK_ANN("local x`: A | B | nil` = 1");
  CHECK_ANN("local x`: A & B` = 1");
  CHECK_ANN("local x`: | A | B` = 1");
  CHECK_ANN("local x`: \"a\" | 'b' | [[c]]` = 1");
  CHECK_ANN("local x`: nil` = nil");
  CHECK_ANN("local x`: true` = true");
  CHECK_ANN("local x`: typeof(foo.bar(1, (2)))` = 1");
  CHECK_ANN("local x`: (number)` = 1");
  CHECK_ANN("local x`: (number)?` = 1");
  CHECK_ANN("local x`: (a: number, ...any) -> (string, number)` = f");
  CHECK_ANN("local x`: <T>(T) -> T` = f");
  CHECK_ANN("local x`: {string}?` = nil");
  CHECK_ANN("local x`: { read x: number, write y: string, z?: boolean; [number]: string }` = {}");
  CHECK_ANN("local x`: {}` = {}");
  CHECK_ANN("local x`: {[\"key\"]: number}` = {}");
  CHECK_ANN("local x`: ((number) -> string)?` = nil");
  CHECK_ANN("local x`: T` -- trailing comment: T\n= 1");
  CHECK_ANN("local x`: { -- comment: {\n  a: T }` = 1");
}

TEST(type_ends_at_right_token) {
  CHECK_ANN("local x`: number` = 5");
  CHECK_ANN("function f()`: T` local x = 1 end");
  CHECK_ANN("local x`: T` x = 1");
  CHECK_ANN("local x`: T`;");
  CHECK_ANN("function f()`: T` return end");
  CHECK_ANN("function f()`: T` if x then end end");
  CHECK_ANN("function f()`: T` ::top:: goto top end");
}

/* ---- casts and labels ---------------------------------------------------- */

TEST(casts) {
  CHECK_ANN("local y = x` :: number`\n");
  CHECK_ANN("local y = (x` :: any`).f\n");
  CHECK_ANN("local y = f(x` :: {string}`, 2)\n");
  CHECK_ANN("local y = x` as number`\n");
  CHECK_ANN("local z = x`!`.y\n");
  CHECK_PLAIN("local as = 1\nlocal x = as\nas(1)\nx = y\nas{1}\nt.as = as\n");
}

TEST(labels_and_goto) {
  CHECK_PLAIN("for i = 1, 3 do\n  if i == 2 then goto continue end\n  ::continue::\nend\n");
  CHECK_PLAIN("f()\n::top::\ngoto top\n");
  CHECK_PLAIN("::a:: ::b:: x = 1 :: c ::\n");
  CHECK_ANN("local x`: T`\n::done::\n");
}

/* ---- plain Lua ----------------------------------------------------------- */

TEST(plain_lua_unchanged) {
  CHECK_PLAIN("");
  CHECK_PLAIN("#!/usr/bin/lua -- shebang: x\nreturn 1\n");
  CHECK_PLAIN("local s = obj:method(a, b):other{1}:third\"x\"\nlocal y = a.b:c()\n");
  CHECK_PLAIN("local t = {a = 1, [k] = v, f = function(a) return a end; 3}\n");
  CHECK_PLAIN("x = a < b and c > d or e <= f and g >= h or i << 2 >> 1\n");
  CHECK_PLAIN("local s = a..b..'c'\nlocal n = 0x1p-4 + 1e+5 + .5 + 3 // 2 + 0xFF ~ 1\n");
  CHECK_PLAIN("local function f(...) return select('#', ...) end\n");
  CHECK_PLAIN("function obj.a.b:c(x, y) return self, x, y end\n");
  CHECK_PLAIN("repeat local x = 1 until x\nwhile true do break end\n");
  CHECK_PLAIN("local x = f\n(g)(1)\n");
  CHECK_PLAIN("return function(a, b) end, function() end\n");
  CHECK_PLAIN("x = #t + -y - ~z ~= w == v\n");
}

TEST(strings_and_comments_untouched) {
  CHECK_PLAIN("local s = \"local x: T = 1\"\n");
  CHECK_PLAIN("-- type X = number\n--[[ function f(a: T): U end ]]\nreturn 1\n");
  CHECK_PLAIN("--[==[ a ]] local x: T ]==]\nlocal s = [==[ a ]] type X = 1 ]==]\n");
  CHECK_PLAIN("local s = 'it\\'s: \"x\"' .. \"a\\\"b: c\"\n");
  CHECK_PLAIN("local s = \"a\\z\n   b: c\"\nlocal t = \"a\\\nlocal x: T\"\n");
  CHECK_PLAIN("local s = \"a\\z\n  local x: T = 1\"\n");
  CHECK_PLAIN("--[[\nlocal x: T = 1\n]]\n--[==[\n]]\ntype X = Y\n]==]\nreturn 1\n");
  CHECK_PLAIN("local s = [[\ntype X = {\n]]\nlocal c = '::x::'\n");
  CHECK_PLAIN("local s = \"unterminated\nlocal x = 1\n");
  CHECK_PLAIN("x = 1 --[[ unterminated comment: T");
  CHECK_ANN("local x`: T` = \"a: b\" -- c: d\n`type S = string` -- type Q = R\n");
}

TEST(length_and_newlines_kept) {
  const char *src = "type T = {\n  a: number,\r\n  b: {\n    c: string,\n  },\n}\n"
                    "local function f(x: T,\n  y: number): (\n  number, string)\n"
                    "  return 1, \"a\"\nend\n";
  char *out = NULL, err[200];
  CHECK_INT(strip_exact(src, strlen(src), &out, err, sizeof err), 0);
  if (!out) return;
  CHECK_INT(strlen(out), strlen(src));
  int lines_in = 0, lines_out = 0;
  for (size_t i = 0; src[i]; i++) {
    if (src[i] == '\n' || src[i] == '\r') CHECK(out[i] == src[i]);
    lines_in += src[i] == '\n';
    lines_out += out[i] == '\n';
  }
  CHECK_INT(lines_out, lines_in);
  CHECK(strstr(out, "number") == NULL);
  CHECK(strstr(out, "return 1, \"a\"") != NULL);
  free(out);
}

/* ---- errors and robustness ------------------------------------------------ */

TEST(malformed_annotations) {
  CHECK_FAILS("local x: = 1", 1);
  CHECK_FAILS("local a = 1\ntype T = {\n  a: number,\n", 4);
  CHECK_FAILS("local a = 1\ntype T = {\n  a: number,\n  b: {string}", 4);
  CHECK_FAILS("type T = {\n  a: number,\nlocal x = 1\n", 3);
  CHECK_FAILS("function f(a: ) end", 1);
  CHECK_FAILS("local x: Map<string\nlocal y = 1", 2);
  CHECK_FAILS("\n\ntype X = ", 3);
  CHECK_PLAIN("type X");          /* not recognisably an alias: left for Lua to reject */
  CHECK_FAILS("type X<T = 1", 1);
  CHECK_FAILS("local x: {[string: number} = {}", 1);
  CHECK_FAILS("function f(): end", 1);
  CHECK_FAILS("local x: typeof(a", 1);
  CHECK_FAILS("function f<>(x) end", 1);
  CHECK_FAILS("local x\r\n\r\n: = 1", 3);
  char *out = (char *)"x", err[64];
  CHECK_INT(strip_types("local x: = 1", 12, &out, err, sizeof err), -1);
  CHECK(out == NULL);
  CHECK_INT(strip_types("local x: = 1", 12, &out, NULL, 0), -1);   /* no err buffer */
  CHECK_INT(strip_types("local x: = 1", 12, &out, err, 4), -1);    /* tiny err buffer */
  CHECK_INT(strlen(err), 3);
}

TEST(deep_nesting_no_crash) {
  size_t n = 100000;
  char *src = malloc(n + 16);
  memcpy(src, "local x: ", 9);
  memset(src + 9, '{', n);
  char *out = NULL, err[200];
  CHECK_INT(strip_exact(src, n + 9, &out, err, sizeof err), -1);
  CHECK_CONTAINS(err, "deeply");
  size_t dots = n - n % 3;
  for (size_t i = 0; i < dots; i += 3) memcpy(src + 9 + i, "...", 3);   /* `.........` */
  CHECK_INT(strip_exact(src, dots + 9, &out, err, sizeof err), -1);
  CHECK_CONTAINS(err, "type expected");
  memset(src + 9, '(', n);                                               /* `((((...` */
  CHECK_INT(strip_exact(src, n + 9, &out, err, sizeof err), -1);
  CHECK_CONTAINS(err, "deeply");
  free(src);
}

static const char *echo_annotated =
    "local logger = require(\"logger\")\n"
    "type Stats = {\n"
    "    messages: number,\n"
    "    workers_spawned: number,\n"
    "}\n"
    "local stats: Stats = { messages = 0, workers_spawned = 0 }\n"
    "local function handle(msg: Message, n: number?): (boolean, string?)\n"
    "    return true, nil\n"
    "end\n"
    "local function main(): integer\n"
    "    local r: {[string]: any} = {}\n"
    "    return 0\n"
    "end\n"
    "return { main = main }\n";

TEST(all_prefixes_and_mutations_no_crash) {
  size_t n = strlen(echo_annotated);
  char err[200], *buf = malloc(n);
  for (size_t k = 0; k <= n; k++) {       /* every prefix: strips or fails cleanly */
    char *out = NULL;
    if (strip_exact(echo_annotated, k, &out, err, sizeof err) == 0) free(out);
  }
  unsigned seed = 12345;
  const char alphabet[] = "{}()[]<>:,.?|&\"'-=\n\\ aT";
  for (int round = 0; round < 3000; round++) {   /* random byte mutations */
    memcpy(buf, echo_annotated, n);
    for (int m = 0; m < 3; m++) {
      seed = seed * 1103515245u + 12345u;
      size_t pos = (seed >> 8) % n;
      seed = seed * 1103515245u + 12345u;
      buf[pos] = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
    }
    char *out = NULL;
    if (strip_exact(buf, n, &out, err, sizeof err) == 0) free(out);
  }
  free(buf);
  char *out = NULL;
  CHECK_INT(strip_exact("", 0, &out, err, sizeof err), 0);
  CHECK_STR(out, "");
  free(out);
}

/* ---- end to end with Lua 5.4 ---------------------------------------------- */

TEST(lua_echo_service_compiles_and_runs) {
  char res[256], src[2048];
  snprintf(src, sizeof src, "%s", echo_annotated);
  char *ret = strstr(src, "return { main = main }");
  snprintf(ret, sizeof src - (size_t)(ret - src),
           "local ok, e = handle({}, 1)\nassert(ok == true and e == nil)\nreturn main()\n");
  CHECK_STR(eval(src, res, sizeof res), "0");
  CHECK_CONTAINS(eval(echo_annotated, res, sizeof res), "table: ");
}

TEST(lua_stats_program_value) {
  char res[256];
  const char *src =
      "type Stats = {messages: number, workers_spawned: number}\n"
      "export type Pair<T> = { first: T, second: T }\n"
      "local function bump<T>(s: Stats, by: number?): Stats\n"
      "  s.messages = s.messages + (by or 1)\n"
      "  return s\n"
      "end\n"
      "local function total(s: Stats): (number, string)\n"
      "  return s.messages + s.workers_spawned, \"ok\"\n"
      "end\n"
      "local stats: Stats = { messages = 0, workers_spawned = 2 }\n"
      "for i: number = 1, 5 do bump(stats) end\n"
      "bump(stats, 10)\n"
      "local type = type(stats)\n"
      "local n: number, tag: string = total(stats)\n"
      "local p: Pair<number> = { first = n, second = n }\n"
      "return tostring(p.first + p.second) .. tag .. type\n";
  CHECK_STR(eval(src, res, sizeof res), "34oktable");
}

TEST(lua_methods_generics_and_labels) {
  char res[256];
  const char *src =
      "local Obj = {}\nObj.__index = Obj\n"
      "function Obj.new(n: number): Obj return setmetatable({n = n}, Obj) end\n"
      "function Obj:add(k: number, cb: ((number) -> number)?): Obj\n"
      "  self.n = self.n + (cb and cb(k) or k)\n  return self\nend\n"
      "local function map<T, U>(xs: {T}, f: (T) -> U): {U}\n"
      "  local out: {U} = {}\n"
      "  for i = 1, #xs do\n"
      "    if xs[i] == 2 then goto continue end\n"
      "    out[#out + 1] = f(xs[i])\n"
      "    ::continue::\n"
      "  end\n"
      "  return out\nend\n"
      "local o = Obj.new(1):add(2, function(x: number): number return x * 10 end)\n"
      "local m = map({1, 2, 3}, function(x: number): string return tostring(x) end)\n"
      "local c = (o.n :: number) + #m\n"
      "return c .. table.concat(m, \",\")\n";
  CHECK_STR(eval(src, res, sizeof res), "231,3");
}

TEST(lua_error_lines_preserved) {
  char res[256];
  const char *runtime =
      "type T = {\n"
      "  a: number,\n"
      "  b: {\n"
      "    c: string,\n"
      "  },\n"
      "}\n"
      "local function f(x: number,\n"
      "                 y: T): (\n"
      "  number)\n"
      "  return x + nil\n"          /* line 10 */
      "end\n"
      "return f(1, {})\n";
  CHECK_CONTAINS(eval(runtime, res, sizeof res), "ERR: t:10:");
  const char *syntax =
      "type T = {\n  a: number,\n}\nlocal x: T = {}\nlocal y = = 2\n";
  CHECK_CONTAINS(eval(syntax, res, sizeof res), "ERR: t:5:");
  CHECK_CONTAINS(eval("error('boom')\n", res, sizeof res), "t:1: boom");
}

TEST(lua_plain_sources_still_run) {
  char res[256];
  const char *src =
      "local type = type\nlocal t = { type = 'x', [1] = 2 }\n"
      "local s = \"local x: T = 1\" -- type Q = R\n"
      "local x <const> = 5\n"
      "local function f(a, ...) return a + select('#', ...) end\n"
      "return type(t) .. t.type .. f(x, 1, 2) .. #s\n";
  CHECK_STR(eval(src, res, sizeof res), "tablex714");
}

int main(void) {
  RUN(alias_simple);
  RUN(alias_export_generic);
  RUN(alias_multiline);
  RUN(type_is_not_keyword);
  RUN(local_annotations);
  RUN(local_attribs_kept);
  RUN(for_annotations);
  RUN(function_params);
  RUN(function_returns);
  RUN(function_generics);
  RUN(type_expressions);
  RUN(type_ends_at_right_token);
  RUN(casts);
  RUN(labels_and_goto);
  RUN(plain_lua_unchanged);
  RUN(strings_and_comments_untouched);
  RUN(length_and_newlines_kept);
  RUN(malformed_annotations);
  RUN(deep_nesting_no_crash);
  RUN(all_prefixes_and_mutations_no_crash);
  RUN(lua_echo_service_compiles_and_runs);
  RUN(lua_stats_program_value);
  RUN(lua_methods_generics_and_labels);
  RUN(lua_error_lines_preserved);
  RUN(lua_plain_sources_still_run);
  return T_DONE();
}
