/*
** test_val.c — plain data trees: construction, reading, copies, and the Lua bridge.
*/
#include "t.h"
#include "value/val.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <string.h>

static struct val *num(int64_t i) {
  struct val *v = val_new(V_INT, "f.yaml", 3);
  v->u.i = i;
  return v;
}

static struct val *str(const char *s) { return val_new_str(s, strlen(s), "f.yaml", 4); }

/* {name: "x", list: [1, "two"], nested: {"a.b": {c: 5}}, lifecycle: {restart: {max: 3}}} */
static struct val *sample(void) {
  struct val *m = val_new(V_MAP, "f.yaml", 1), *l = val_new(V_LIST, "f.yaml", 2);
  val_map_set(m, "name", str("x"));
  val_list_push(l, num(1));
  val_list_push(l, str("two"));
  val_map_set(m, "list", l);
  struct val *inner = val_new(V_MAP, NULL, 0), *dotted = val_new(V_MAP, NULL, 0);
  val_map_set(inner, "c", num(5));
  val_map_set(dotted, "a.b", inner);
  val_map_set(m, "nested", dotted);
  struct val *lc = val_new(V_MAP, NULL, 0), *rs = val_new(V_MAP, NULL, 0);
  val_map_set(rs, "max", num(3));
  val_map_set(lc, "restart", rs);
  val_map_set(m, "lifecycle", lc);
  return m;
}

TEST(build_and_read) {
  struct val *m = sample();
  CHECK_INT(val_len(m), 4);
  CHECK_STR(val_key_at(m, 0), "name");
  CHECK_STR(val_key_at(m, 3), "lifecycle");
  CHECK_STR(val_str(val_get(m, "name"), NULL), "x");
  CHECK_STR(val_str(val_get(m, "missing"), "dflt"), "dflt");
  CHECK_INT(val_int(val_path(m, "lifecycle.restart.max"), 0), 3);
  CHECK_INT(val_int(val_path(m, "list.0"), 0), 1);
  CHECK_STR(val_str(val_path(m, "list.1"), NULL), "two");
  CHECK(val_path(m, "list.2") == NULL);
  CHECK(val_path(m, "list.-1") == NULL);
  CHECK_INT(val_int(val_path(m, "nested.a.b.c"), 0), 5);   /* a key with a dot */
  CHECK(val_path(m, "nested.a") == NULL);
  CHECK(val_path(m, "") == m);
  CHECK(val_path(NULL, "x") == NULL);
  CHECK_INT(val_get(m, "name")->line, 4);
  CHECK_STR(val_get(m, "name")->file, "f.yaml");
  /* replacing a key keeps its position and frees the old value (ASan checks) */
  val_map_set(m, "name", str("y"));
  CHECK_STR(val_str(val_get(m, "name"), NULL), "y");
  CHECK_STR(val_key_at(m, 0), "name");
  CHECK_INT(val_len(m), 4);
  val_free(m);
}

TEST(accessor_fallbacks) {
  struct val *n = val_new(V_NUM, NULL, 0);
  n->u.n = 3.0;
  CHECK_INT(val_int(n, -1), 3);
  n->u.n = 3.5;
  CHECK_INT(val_int(n, -1), -1);
  CHECK(val_num(n, 0) == 3.5);
  CHECK_INT(val_bool(n, 7), 7);
  CHECK(val_str(n, NULL) == NULL);
  CHECK_INT(val_len(n), 0);
  CHECK(val_at(n, 0) == NULL && val_key_at(n, 0) == NULL);
  CHECK(val_num(NULL, 1.5) == 1.5);
  val_free(n);
  CHECK_STR(val_type_name(V_MAP), "map");
  CHECK_STR(val_type_name(V_INT), "int");
  struct val *l = val_new(V_LIST, NULL, 0);
  val_list_push(l, str("a"));
  CHECK(val_key_at(l, 0) == NULL);
  CHECK(val_get(l, "a") == NULL);
  val_free(l);
  val_free(NULL);
}

TEST(copy_is_deep) {
  struct val *m = sample();
  struct val *s = (struct val *)val_get(m, "name");
  s->u.str.origin = "src/x.lua";
  struct val *c = val_copy(m);
  val_free(m);
  CHECK_STR(val_str(val_get(c, "name"), NULL), "x");
  CHECK_STR(val_get(c, "name")->u.str.origin, "src/x.lua");
  CHECK_INT(val_get(c, "name")->line, 4);
  CHECK_INT(val_int(val_path(c, "lifecycle.restart.max"), 0), 3);
  val_free(c);
  struct val *bin = val_new_str("a\0b", 3, NULL, 0);
  struct val *bc = val_copy(bin);
  CHECK(bc->u.str.len == 3 && memcmp(bc->u.str.s, "a\0b", 3) == 0);
  val_free(bin);
  val_free(bc);
}

static lua_State *newstate(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  return L;
}

/* Runs `code` (which returns one value) and converts the result. */
static struct val *from_code(lua_State *L, const char *code, char *err, size_t n) {
  if (luaL_dostring(L, code) != LUA_OK) {
    snprintf(err, n, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return NULL;
  }
  struct val *v = val_from_lua(L, -1, "chunk", err, n);
  lua_pop(L, 1);
  return v;
}

TEST(from_lua_shapes) {
  lua_State *L = newstate();
  char err[256] = "";
  struct val *v = from_code(L, "return { z = 1, a = { 10, 20, 30 }, m = 'x', [3] = true, f = 1.5, "
                               "e = {}, s = 'a\\0b' }", err, sizeof err);
  CHECK(v != NULL);
  CHECK(v && v->type == V_MAP);
  static const char *const order[] = {"3", "a", "e", "f", "m", "s", "z"};   /* sorted */
  CHECK_INT(val_len(v), 7);
  for (size_t i = 0; i < 7 && v; i++) CHECK_STR(val_key_at(v, i), order[i]);
  CHECK(val_get(v, "a") && val_get(v, "a")->type == V_LIST && val_len(val_get(v, "a")) == 3);
  CHECK_INT(val_int(val_path(v, "a.2"), 0), 30);
  CHECK(val_get(v, "z") && val_get(v, "z")->type == V_INT);
  CHECK(val_get(v, "f") && val_get(v, "f")->type == V_NUM);
  CHECK_INT(val_bool(val_get(v, "3"), 0), 1);
  CHECK(val_get(v, "e") && val_get(v, "e")->type == V_MAP && val_len(val_get(v, "e")) == 0);
  CHECK(val_get(v, "s") && val_get(v, "s")->u.str.len == 3);
  CHECK_STR(v ? v->file : NULL, "chunk");
  val_free(v);
  /* a sparse integer table is a map with decimal keys */
  v = from_code(L, "return { [1] = 'a', [3] = 'c' }", err, sizeof err);
  CHECK(v && v->type == V_MAP);
  CHECK_STR(val_str(val_get(v, "3"), NULL), "c");
  val_free(v);
  /* a table reached twice without a cycle is fine */
  v = from_code(L, "local t = { 1 } return { a = t, b = t }", err, sizeof err);
  CHECK(v && val_int(val_path(v, "b.0"), 0) == 1);
  val_free(v);
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

TEST(from_lua_refusals) {
  static const struct { const char *code, *msg; } cases[] = {
    {"return { a = { f = print } }", "a.f: a function cannot be converted to data"},
    {"local t = {} t.self = t return t", "self: table contains a cycle"},
    {"local t = { {} } t[1][1] = t return t", "[1][1]: table contains a cycle"},
    {"return { [true] = 1 }", "table keys must be strings or integers"},
    {"return { [1.5] = 1 }", "table keys must be strings or integers"},
    {"return { ['1'] = 'a', [1] = 'b', x = 1 }", "both as a string and as an integer"},
    {"return { co = coroutine.create(print) }", "co: a thread cannot be converted"},
    {"return io.stdout", "a userdata cannot be converted"},
    {"local t = {} local c = t for i = 1, 200 do c.x = {} c = c.x end return t", "nested too deeply"},
  };
  lua_State *L = newstate();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char err[256] = "";
    struct val *v = from_code(L, cases[i].code, err, sizeof err);
    CHECK(v == NULL);
    CHECK_CONTAINS(err, cases[i].msg);
    val_free(v);
  }
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

TEST(lua_round_trip) {
  lua_State *L = newstate();
  char err[256] = "";
  struct val *m = sample();
  struct val *f = val_new(V_NUM, NULL, 0);
  f->u.n = 2.25;
  val_map_set(m, "n", f);
  struct val *b = val_new(V_BOOL, NULL, 0);
  b->u.b = 1;
  val_map_set(m, "b", b);
  val_map_set(m, "nil", val_new(V_NULL, NULL, 0));
  val_push_lua(L, m);
  lua_setglobal(L, "v");
  CHECK(luaL_dostring(L, "assert(v.name == 'x') assert(math.type(v.list[1]) == 'integer') "
                         "assert(v.list[2] == 'two') assert(#v.list == 2) "
                         "assert(v.nested['a.b'].c == 5) assert(v.lifecycle.restart.max == 3) "
                         "assert(math.type(v.n) == 'float' and v.n == 2.25) assert(v.b == true) "
                         "assert(v['nil'] == nil)") == LUA_OK);
  lua_getglobal(L, "v");
  struct val *back = val_from_lua(L, -1, NULL, err, sizeof err);
  lua_pop(L, 1);
  CHECK(back != NULL);
  CHECK_INT(val_len(back), 6);   /* nil dropped */
  CHECK_STR(val_str(val_get(back, "name"), NULL), "x");
  CHECK(val_get(back, "list") && val_get(back, "list")->type == V_LIST);
  CHECK(val_path(back, "list.0") && val_path(back, "list.0")->type == V_INT);
  CHECK_INT(val_int(val_path(back, "nested.a.b.c"), 0), 5);
  CHECK(val_num(val_get(back, "n"), 0) == 2.25 && val_get(back, "n")->type == V_NUM);
  CHECK_INT(val_bool(val_get(back, "b"), 0), 1);
  val_push_lua(L, NULL);
  CHECK(lua_isnil(L, -1));
  lua_pop(L, 1);
  CHECK_INT(lua_gettop(L), 0);
  val_free(back);
  val_free(m);
  lua_close(L);
}

/* Found by fuzz_registry: an integral check cast any float to int64_t, which is undefined
** outside its range (UBSan: float-cast-overflow). Out-of-range floats are not integers. */
TEST(int_of_out_of_range_floats) {
  static const double bad[] = {3.33333e32, -1e19, 0x1p63, INFINITY, -INFINITY, NAN, 0.5};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct val *v = val_new(V_NUM, NULL, 0);
    v->u.n = bad[i];
    CHECK_INT(val_int(v, 7), 7);
    val_free(v);
  }
  static const struct { double d; int64_t i; } good[] = {{-0x1p63, INT64_MIN}, {0x1p62, 1LL << 62}, {-3.0, -3}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    struct val *v = val_new(V_NUM, NULL, 0);
    v->u.n = good[i].d;
    CHECK_INT(val_int(v, 7), good[i].i);
    val_free(v);
  }
}

int main(void) {
  RUN(build_and_read);
  RUN(accessor_fallbacks);
  RUN(copy_is_deep);
  RUN(from_lua_shapes);
  RUN(from_lua_refusals);
  RUN(lua_round_trip);
  RUN(int_of_out_of_range_floats);
  return T_DONE();
}
