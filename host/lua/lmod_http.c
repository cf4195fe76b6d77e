/*
** lmod_http.c — the `http` module for function handlers (wippy-compat.md §3.7, §5.5):
** http.request() / http.response() give objects bound to the request being served; once the
** handler has returned they raise "the HTTP request is over". Response methods return nil or
** an error object (never self). Owner: the thread running the call.
*/
#include "value/errors.h"
#include "http/http.h"
#include "value/json.h"
#include "lmod.h"
#include "runtime/luaenv.h"
#include "runtime/call.h"
#include "runtime/proc.h"
#include "runtime/task.h"

#include <civetweb.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REQ_MT "taskhost.http.request"
#define RES_MT "taskhost.http.response"

struct uhttp { uint64_t serial; };

static struct http_req *call_req(lua_State *L) {
  struct proc *p = proc_of(L);
  return p->call && p->call->kind == CALL_HTTP ? p->call->ctx : NULL;
}

/* The live request behind the object at index 1, or a raised error. Methods carry their
** metatable as upvalue 1, so the type check is a pointer comparison, not a name lookup. */
static struct http_req *check(lua_State *L, const char *mt) {
  struct uhttp *u = luaenv_toself(L, mt);
  struct http_req *r = call_req(L);
  if (!r || r->serial != u->serial) luaL_error(L, "the HTTP request is over (its handler returned)");
  return r;
}

/* http.request / http.response carry their type's metatable as upvalue 1. */
static int new_object(lua_State *L) {
  struct http_req *r = call_req(L);
  if (!r) return errors_fail(L, EK_INVALID, "not inside an HTTP handler");
  struct uhttp *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->serial = r->serial;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  return 1;
}

/* ---- Request ---------------------------------------------------------------------- */

static struct http_req *req(lua_State *L) { return check(L, REQ_MT); }

static int push_opt_string(lua_State *L, const char *s) {
  if (s) lua_pushstring(L, s);
  else lua_pushnil(L);
  return 1;
}

static int r_method(lua_State *L) { return push_opt_string(L, req(L)->ri->request_method); }
static int r_path(lua_State *L) { return push_opt_string(L, req(L)->path); }
static int r_content_type(lua_State *L) { return push_opt_string(L, http_req_header(req(L), "Content-Type")); }
static int r_host(lua_State *L) { return push_opt_string(L, http_req_header(req(L), "Host")); }

static int r_content_length(lua_State *L) {
  long long n = req(L)->ri->content_length;
  if (n < 0) lua_pushnil(L);
  else lua_pushinteger(L, n);
  return 1;
}

static int r_has_body(lua_State *L) {
  lua_pushboolean(L, req(L)->ri->content_length > 0);
  return 1;
}

static int r_remote_addr(lua_State *L) {
  const struct mg_request_info *ri = req(L)->ri;
  lua_pushfstring(L, "%s:%d", ri->remote_addr, ri->remote_port);
  return 1;
}

/* All values of a header, joined with ", ". */
static int r_header(lua_State *L) {
  const struct mg_request_info *ri = req(L)->ri;
  const char *name = luaL_checkstring(L, 2);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int found = 0;
  for (int i = 0; i < ri->num_headers; i++) {
    if (strcasecmp(ri->http_headers[i].name, name) != 0) continue;
    if (found++) luaL_addstring(&b, ", ");
    luaL_addstring(&b, ri->http_headers[i].value);
  }
  luaL_pushresult(&b);
  if (!found) lua_pushnil(L);
  return 1;
}

static int r_headers(lua_State *L) {
  const struct mg_request_info *ri = req(L)->ri;
  lua_createtable(L, 0, ri->num_headers);
  for (int i = 0; i < ri->num_headers; i++) {
    lua_pushstring(L, ri->http_headers[i].value);
    lua_setfield(L, -2, ri->http_headers[i].name);
  }
  return 1;
}

static int r_query(lua_State *L) {
  const char *q = req(L)->ri->query_string;
  const char *name = luaL_checkstring(L, 2);
  if (!q) return push_opt_string(L, NULL);
  size_t n = strlen(q) + 1;
  char *v = malloc(n);
  int len = v ? mg_get_var(q, n - 1, name, v, n) : -1;
  if (len >= 0) lua_pushlstring(L, v, (size_t)len);
  else lua_pushnil(L);
  free(v);
  return 1;
}

/* Every query parameter; repeated names are joined with ",". */
static int r_query_params(lua_State *L) {
  const char *q = req(L)->ri->query_string;
  lua_newtable(L);
  for (const char *s = q; s && *s;) {
    const char *amp = strchr(s, '&'), *end = amp ? amp : s + strlen(s);
    const char *eq = memchr(s, '=', (size_t)(end - s));
    size_t kn = (size_t)((eq ? eq : end) - s), vn = eq ? (size_t)(end - eq - 1) : 0;
    char *k = malloc(kn + 1), *v = malloc(vn + 1);
    int kl = mg_url_decode(s, (int)kn, k, (int)kn + 1, 1);
    int vl = eq ? mg_url_decode(eq + 1, (int)vn, v, (int)vn + 1, 1) : 0;
    if (kl > 0) {
      lua_pushlstring(L, k, (size_t)kl);
      if (lua_rawget(L, -2) == LUA_TSTRING) { lua_pushliteral(L, ","); lua_pushlstring(L, v, (size_t)(vl > 0 ? vl : 0)); lua_concat(L, 3); }
      else { lua_pop(L, 1); lua_pushlstring(L, v, (size_t)(vl > 0 ? vl : 0)); }
      lua_pushlstring(L, k, (size_t)kl);
      lua_insert(L, -2);
      lua_rawset(L, -3);
    }
    free(k);
    free(v);
    s = amp ? amp + 1 : NULL;
  }
  return 1;
}

static int r_param(lua_State *L) {
  struct http_req *r = req(L);
  const char *name = luaL_checkstring(L, 2);
  for (int i = 0; i < r->match.nparams; i++)
    if (strcmp(r->match.params[i].name, name) == 0) {
      lua_pushlstring(L, r->match.params[i].value, r->match.params[i].len);
      return 1;
    }
  lua_pushnil(L);
  return 1;
}

static int r_params(lua_State *L) {
  struct http_req *r = req(L);
  lua_createtable(L, 0, r->match.nparams);
  for (int i = 0; i < r->match.nparams; i++) {
    lua_pushlstring(L, r->match.params[i].value, r->match.params[i].len);
    lua_setfield(L, -2, r->match.params[i].name);
  }
  return 1;
}

/* Reads the body once; pushes nothing and returns 0, or pushes nil, err and returns 2. */
static int load_body(lua_State *L, struct http_req *r) {
  if (http_req_read_body(r) == 0) return 0;
  if (r->too_large) return errors_fail(L, EK_INVALID, "request body too large (limit %zu bytes)", r->max_body);
  return errors_fail(L, EK_INTERNAL, "cannot read the request body");
}

static int r_body(lua_State *L) {
  struct http_req *r = req(L);
  int n = load_body(L, r);
  if (n) return n;
  lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
  return 1;
}

static int r_body_json(lua_State *L) {
  struct http_req *r = req(L);
  int n = load_body(L, r);
  if (n) return n;
  if (r->body.len == 0) return errors_fail(L, EK_INVALID, "empty request body");
  char err[256];
  if (json_decode(L, r->body.data, r->body.len, err, sizeof err) != 0)
    return errors_fail(L, EK_INVALID, "%s", err);
  return 1;
}

/* ---- Response ------------------------------------------------------------------------ */

static struct http_req *res(lua_State *L) {
  struct http_req *r = check(L, RES_MT);
  r->handled = 1;
  return r;
}

static int committed(lua_State *L) {
  return errors_push(L, EK_INVALID, "headers already sent (set_status or a write came first)");
}

static int s_set_status(lua_State *L) {
  struct http_req *r = res(L);
  lua_Integer code = luaL_checkinteger(L, 2);
  luaL_argcheck(L, code >= 100 && code <= 999, 2, "an HTTP status code");
  if (r->committed) return committed(L);
  r->status = (int)code;
  r->committed = 1;
  return 0;
}

static int s_set_header(lua_State *L) {
  struct http_req *r = res(L);
  const char *name = luaL_checkstring(L, 2), *value = luaL_checkstring(L, 3);
  if (r->committed) return committed(L);
  if (http_res_add_header(r, name, value) != 0)
    return errors_push(L, EK_INVALID, "invalid header %s", name);
  return 0;
}

static int s_set_content_type(lua_State *L) {
  struct http_req *r = res(L);
  const char *ct = luaL_checkstring(L, 2);
  if (r->committed) return committed(L);
  if (http_res_add_header(r, "Content-Type", ct) != 0) return errors_push(L, EK_INVALID, "invalid content type");
  return 0;
}

static int s_write(lua_State *L) {
  struct http_req *r = res(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  r->committed = 1;
  buf_add(r->out, s, n);
  return 0;
}

/* Encodes v; sends application/json unless a Content-Type was set explicitly. */
static int s_write_json(lua_State *L) {
  struct http_req *r = res(L);
  luaL_checkany(L, 2);
  char err[256];
  size_t before = r->out->len;
  if (json_encode(L, 2, r->out, err, sizeof err) != 0) {
    r->out->len = before;
    return errors_push(L, EK_INTERNAL, "cannot encode JSON: %s", err);
  }
  if (!r->has_ctype) {
    buf_adds(r->headers, "Content-Type: application/json\r\n");
    r->has_ctype = 1;
  }
  r->committed = 1;
  return 0;
}

/* Responses are sent in one piece when the handler returns; flush only marks it handled. */
static int s_flush(lua_State *L) {
  res(L);
  return 0;
}

/* ---- module --------------------------------------------------------------------------- */

static void set_ints(lua_State *L, const char *name, const char *const *names, const int *vals) {
  lua_newtable(L);
  for (int i = 0; names[i]; i++) {
    lua_pushinteger(L, vals[i]);
    lua_setfield(L, -2, names[i]);
  }
  lua_setfield(L, -2, name);
}

int luaopen_http(lua_State *L) {
  static const luaL_Reg req_methods[] = {
    {"method", r_method}, {"path", r_path}, {"query", r_query}, {"query_params", r_query_params},
    {"header", r_header}, {"headers", r_headers}, {"content_type", r_content_type},
    {"content_length", r_content_length}, {"host", r_host}, {"remote_addr", r_remote_addr},
    {"param", r_param}, {"params", r_params}, {"body", r_body}, {"body_json", r_body_json},
    {"has_body", r_has_body}, {NULL, NULL},
  };
  static const luaL_Reg res_methods[] = {
    {"set_status", s_set_status}, {"set_header", s_set_header},
    {"set_content_type", s_set_content_type}, {"write", s_write}, {"write_json", s_write_json},
    {"flush", s_flush}, {NULL, NULL},
  };
  static const char *const status_names[] = {
    "OK", "CREATED", "ACCEPTED", "NO_CONTENT", "MOVED_PERMANENTLY", "FOUND", "NOT_MODIFIED",
    "BAD_REQUEST", "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND", "METHOD_NOT_ALLOWED", "CONFLICT",
    "PAYLOAD_TOO_LARGE", "UNPROCESSABLE", "TOO_MANY_REQUESTS", "INTERNAL_ERROR",
    "INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", NULL,
  };
  static const int status_codes[] = {200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 405,
                                     409, 413, 422, 429, 500, 500, 503};
  static const char *const methods[] = {
    "GET", "GET", "POST", "POST", "PUT", "PUT", "DELETE", "DELETE", "PATCH", "PATCH",
    "HEAD", "HEAD", "OPTIONS", "OPTIONS", NULL,
  };
  static const char *const content[] = {
    "JSON", "application/json", "FORM", "application/x-www-form-urlencoded",
    "MULTIPART", "multipart/form-data", "TEXT", "text/plain", "STREAM", "application/octet-stream",
    NULL,
  };
  luaenv_newtype(L, REQ_MT, req_methods, NULL);
  luaenv_newtype(L, RES_MT, res_methods, NULL);
  lua_createtable(L, 0, 5);
  luaL_getmetatable(L, REQ_MT);
  lua_pushcclosure(L, new_object, 1);
  lua_setfield(L, -2, "request");
  luaL_getmetatable(L, RES_MT);
  lua_pushcclosure(L, new_object, 1);
  lua_setfield(L, -2, "response");
  set_ints(L, "STATUS", status_names, status_codes);
  lua_newtable(L);
  luaenv_setstrings(L, methods);
  lua_setfield(L, -2, "METHOD");
  lua_newtable(L);
  luaenv_setstrings(L, content);
  lua_setfield(L, -2, "CONTENT");
  return 1;
}
