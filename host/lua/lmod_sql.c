/*
** lmod_sql.c — the `sql` module (wippy-compat.md §3.13, issue 14): sql.get(id) → DB with
** query, execute, prepare, begin, type, stats, release; Tx and Stmt objects; sql.NULL,
** sql.type, sql.isolation, sql.as. A call builds a request (db/db.h), parks its task on a
** PEND_IO session (task.h) and the driver's thread completes it with an MK_IO message.
** Owner: the thread running the calling state; req_done runs on the driver's threads.
**
** Hand-off of a request (exactly once, `claim`; as lmod_http_client.c):
**   WAITING → POSTED  by req_done: the completion is posted; the message owns the request
**                     and gives it to req_push (waiter found) or req_drop (not found).
**   WAITING → GONE    by req_cancel (the waiter left first): it cancels by id before the
**                     swap (the statement is interrupted); the later done sees GONE.
** A BEGIN whose Tx never reached Lua (GONE, dropped) is rolled back by dispose.
**
** Transactions: a Tx pins a connection until commit/rollback. One left open is rolled back
** when its object is collected (a process's state is closed when the process ends) and, in a
** function state (HTTP handler, job, consumer), when the call that began it ends.
*/
#include "db/db.h"
#include "lmod.h"
#include "runtime/msg.h"
#include "runtime/proc.h"
#include "runtime/rt.h"
#include "runtime/task.h"
#include "value/errors.h"
#include "base/log.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#define DB_MT "taskhost.sql.db"
#define TX_MT "taskhost.sql.tx"
#define STMT_MT "taskhost.sql.stmt"
#define AS_MT "taskhost.sql.as"
#define NULL_KEY "taskhost.sql.NULL"
#define OPEN_KEY "taskhost.sql.open"     /* registry: {[Tx] = true} begun in the current call */
#define HOOK_KEY "taskhost.sql.hook"

enum { CLAIM_WAITING, CLAIM_POSTED, CLAIM_GONE };
enum { TX_OPEN, TX_DONE };

struct ldb { struct db *d; };
struct ltx { struct db *d; struct db_tx *tx; int state; };
struct lstmt { struct db *d; char *sql; size_t len; int closed; };

static const struct { const char *kind; int retryable; } fail_kinds[] = {
  [DBF_NONE] = {EK_UNKNOWN, 0},          [DBF_INVALID] = {EK_INVALID, 0},
  [DBF_CONFLICT] = {EK_CONFLICT, 0},     [DBF_UNAVAILABLE] = {EK_UNAVAILABLE, 1},
  [DBF_NOT_FOUND] = {EK_NOT_FOUND, 0},   [DBF_TIMEOUT] = {EK_TIMEOUT, 1},
  [DBF_CANCELED] = {EK_CANCELED, 0},     [DBF_INTERNAL] = {EK_INTERNAL, 0},
  [DBF_TOO_LARGE] = {EK_INVALID, 0},
};

/* ---- fire-and-forget rollback ---- */

static void free_done(struct db_req *r) { db_req_free(r); }

static void rollback_async(struct db *d, struct db_tx *tx) {
  struct db_req *r = db_req_new(DBO_ROLLBACK, "", 0);
  r->tx = tx;
  r->done = free_done;
  db_submit(d, r);
}

/* A finished request nobody will read: a BEGIN that opened a transaction is rolled back. */
static void dispose(struct db_req *r) {
  if (r->op == DBO_BEGIN && r->fail == DBF_NONE && r->tx) rollback_async(r->db, r->tx);
  db_req_free(r);
}

/* ---- results ---- */

static void push_error(lua_State *L, int fail, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, fail_kinds[fail].kind);
  lua_pushboolean(L, fail_kinds[fail].retryable);
  lua_pushnil(L);
  lua_pushnil(L);
  errors_build(L);
}

static void push_val(lua_State *L, const struct db_val *v) {
  switch (v->type) {
  case DBV_INT: lua_pushinteger(L, (lua_Integer)v->i); break;
  case DBV_FLOAT: lua_pushnumber(L, v->f); break;
  case DBV_BOOL: lua_pushboolean(L, v->i != 0); break;
  case DBV_TEXT: case DBV_BLOB: lua_pushlstring(L, v->s ? v->s : "", v->len); break;
  default: lua_pushnil(L);
  }
}

static void push_rows(lua_State *L, struct db_req *r) {
  lua_createtable(L, r->nrows > INT32_MAX ? 0 : (int)r->nrows, 0);
  for (size_t i = 0; i < r->nrows; i++) {
    lua_createtable(L, 0, r->ncols);
    const struct db_val *row = r->cells + i * (size_t)r->ncols;
    for (int k = 0; k < r->ncols; k++) {
      if (row[k].type == DBV_NULL) continue;     /* NULL: the key is absent (nil) */
      push_val(L, &row[k]);
      lua_setfield(L, -2, r->cols[k]);
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static void track_tx(lua_State *L, int idx);

static int build_rows(lua_State *L) {
  push_rows(L, lua_touserdata(L, 1));
  return 1;
}

/* The rows of r on co. They are built under a pcall on the process's main state (idle while
** a completion is delivered), so a result the state's memory limit cannot hold is an error
** value, not an error raised where nothing catches it; then moved onto co. */
static int push_rows_safe(lua_State *co, struct db_req *r) {
  lua_State *M = proc_of(co)->L;
  lua_pushcfunction(M, build_rows);
  lua_pushlightuserdata(M, r);
  if (lua_pcall(M, 1, 1, 0) == LUA_OK) { lua_xmove(M, co, 1); return 1; }
  lua_pop(M, 1);
  push_error(co, DBF_TOO_LARGE, "sql: result too large for the state's memory (limits.process_memory)");
  return 2;
}

static int req_push(lua_State *co, void *req) {
  struct db_req *r = req;
  luaL_checkstack(co, 10, "sql");
  int n = 1;
  if (r->fail != DBF_NONE) {
    push_error(co, r->fail, r->errmsg);
    n = 2;
  } else if (r->op == DBO_QUERY) {
    n = push_rows_safe(co, r);
  } else if (r->op == DBO_EXEC) {
    lua_createtable(co, 0, 2);
    lua_pushinteger(co, (lua_Integer)r->last_insert_id);
    lua_setfield(co, -2, "last_insert_id");
    lua_pushinteger(co, (lua_Integer)r->rows_affected);
    lua_setfield(co, -2, "rows_affected");
  } else if (r->op == DBO_BEGIN) {
    struct ltx *x = lua_newuserdatauv(co, sizeof *x, 0);
    x->d = r->db;
    db_ref(x->d);
    x->tx = r->tx;
    x->state = TX_OPEN;
    r->tx = NULL;                                 /* the Tx object owns it now */
    luaL_setmetatable(co, TX_MT);
    track_tx(co, -1);
  } else {
    lua_pushboolean(co, 1);
  }
  db_req_free(r);
  return n;
}

static void req_drop(void *req) { dispose(req); }

static void req_cancel(void *req) {
  struct db_req *r = req;
  db_cancel(r->db, r->id);
  int want = CLAIM_WAITING;
  atomic_compare_exchange_strong(&r->claim, &want, CLAIM_GONE);   /* lost: the message owns r */
}

static const struct io_ops req_ops = {req_push, req_drop, req_cancel, NULL, NULL};

static void req_done(struct db_req *r) {
  int want = CLAIM_WAITING;
  if (atomic_compare_exchange_strong(&r->claim, &want, CLAIM_POSTED))
    proc_post(r->ud, r->pid, msg_new_io(r->session, &req_ops, r), NULL);
  else
    dispose(r);                                   /* GONE: the waiter left */
}

/* ---- parameters ---- */

static int is_null(lua_State *L, int idx) {
  lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY);
  int same = lua_rawequal(L, idx, -1);
  lua_pop(L, 1);
  return same;
}

/* The value at idx into v; NULL on success, else what is wrong. */
static const char *to_val(lua_State *L, int idx, struct db_val *v) {
  idx = lua_absindex(L, idx);
  memset(v, 0, sizeof *v);
  const char *s;
  size_t n;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: v->type = DBV_NULL; return NULL;
  case LUA_TBOOLEAN: v->type = DBV_INT; v->i = lua_toboolean(L, idx); return NULL;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) { v->type = DBV_INT; v->i = lua_tointeger(L, idx); }
    else { v->type = DBV_FLOAT; v->f = lua_tonumber(L, idx); }
    return NULL;
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &n);
    v->type = DBV_TEXT;
    v->s = xmalloc(n + 1);
    memcpy(v->s, s, n + 1);
    v->len = n;
    return NULL;
  case LUA_TUSERDATA:
    if (is_null(L, idx)) { v->type = DBV_NULL; return NULL; }
    return "a userdata";
  case LUA_TTABLE:
    if (lua_getmetatable(L, idx)) {
      luaL_getmetatable(L, AS_MT);
      int as = lua_rawequal(L, -1, -2);
      lua_pop(L, 2);
      if (as) {
        lua_getfield(L, idx, "type");
        int type = (int)lua_tointeger(L, -1);
        lua_getfield(L, idx, "value");
        const char *bad = to_val(L, -1, v);
        lua_pop(L, 2);
        if (!bad && type == DBV_BLOB && v->type == DBV_TEXT) v->type = DBV_BLOB;
        return bad;
      }
    }
    return "a table";
  default: return lua_typename(L, lua_type(L, idx));
  }
}

/* Fills r's params from the table at idx (nil/none: none). 0, or -1 with err set. */
static int take_params(lua_State *L, int idx, struct db_req *r, char *err, size_t errlen, size_t max) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (!lua_istable(L, idx) || luaL_getmetafield(L, idx, "__name") != LUA_TNIL) {
    if (lua_istable(L, idx)) lua_pop(L, 1);
    snprintf(err, errlen, "sql: params must be a table (an array, or a map of names)");
    return -1;
  }
  size_t n = 0, len = lua_rawlen(L, idx);
  int named = 0;
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
    if (++n > max) { lua_pop(L, 2); snprintf(err, errlen, "sql: more than %zu params (max_params)", max); return -1; }
    if (lua_type(L, -2) == LUA_TSTRING) named = 1;
  }
  if (named && len) { snprintf(err, errlen, "sql: params mix array items and names"); return -1; }
  if (!named && n != len) { snprintf(err, errlen, "sql: params has holes (use sql.NULL for NULL)"); return -1; }
  r->params = xcalloc(n ? n : 1, sizeof *r->params);
  if (named) r->names = xcalloc(n ? n : 1, sizeof *r->names);
  size_t i = 0;
  for (lua_pushnil(L); named ? lua_next(L, idx) : (lua_pop(L, 1), 0); lua_pop(L, 1), i++) {
    if (lua_type(L, -2) != LUA_TSTRING) { lua_pop(L, 2); snprintf(err, errlen, "sql: params mix array items and names"); return -1; }
    r->names[i] = xstrdup(lua_tostring(L, -2));
    r->nparams = i + 1;
    const char *bad = to_val(L, -1, &r->params[i]);
    if (bad) { lua_pop(L, 2); snprintf(err, errlen, "sql: param %s is %s", r->names[i], bad); return -1; }
  }
  for (i = 0; !named && i < n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    r->nparams = i + 1;
    const char *bad = to_val(L, -1, &r->params[i]);
    lua_pop(L, 1);
    if (bad) { snprintf(err, errlen, "sql: param %zu is %s", i + 1, bad); return -1; }
  }
  return 0;
}

/* ---- running a request ---- */

/* Parks the calling task until r is done; results come from req_push (then k, if any). */
static int park(lua_State *L, struct task *t, struct db *d, struct db_req *r, lua_KFunction k) {
  struct proc *p = t->p;
  struct pending *pe = pending_new_io(p, t, &req_ops, r);
  r->done = req_done;
  r->ud = p->rt;
  r->pid = p->pid;
  r->session = pe->session;
  atomic_store(&r->claim, CLAIM_WAITING);
  t->pend = pe;
  task_park(t);
  db_submit(d, r);
  return lua_yieldk(L, 0, 0, k);
}

/* Runs op with sql (sidx) and params (pidx, 0 = none) on d (tx: its connection). */
static int run(lua_State *L, struct db *d, struct db_tx *tx, int op, const char *sql, size_t len,
               int pidx, lua_KFunction k) {
  struct task *t = task_check_blocking(L, "sql");
  if (len > d->lim.max_sql)
    return errors_fail(L, EK_INVALID, "sql: the statement is %zu bytes, over the budget of %zu (max_sql)",
                       len, d->lim.max_sql);
  struct db_req *r = db_req_new(op, sql, len);
  r->tx = tx;
  char err[256];
  if (pidx && take_params(L, pidx, r, err, sizeof err, d->lim.max_params) != 0) {
    db_req_free(r);
    return errors_fail(L, EK_INVALID, "%s", err);
  }
  return park(L, t, d, r, k);
}

/* The database (and transaction) of the DB or Tx at idx; raises on anything else. Returns 0,
** or pushes nil, err for a Tx that is over and returns 2. */
static int owner(lua_State *L, int idx, struct db **d, struct db_tx **tx) {
  struct ldb *b = luaL_testudata(L, idx, DB_MT);
  if (b) {
    if (!b->d) luaL_error(L, "sql: the database handle was released");
    *d = b->d;
    *tx = NULL;
    return 0;
  }
  struct ltx *x = luaL_checkudata(L, idx, TX_MT);
  if (x->state != TX_OPEN) return errors_fail(L, EK_INVALID, "sql: the transaction is already committed or rolled back");
  *d = x->d;
  *tx = x->tx;
  return 0;
}

static int o_query(lua_State *L) {
  struct db *d; struct db_tx *tx;
  if (owner(L, 1, &d, &tx)) return 2;
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  return run(L, d, tx, DBO_QUERY, s, n, 3, NULL);
}

static int o_execute(lua_State *L) {
  struct db *d; struct db_tx *tx;
  if (owner(L, 1, &d, &tx)) return 2;
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  return run(L, d, tx, DBO_EXEC, s, n, 3, NULL);
}

/* After a PREPARE: (owner, sql, true) → a Stmt; (…, nil, err) stays. */
static int prepare_k(lua_State *L, int status, lua_KContext ctx) {
  if (lua_isnil(L, -2)) return 2;
  struct db *d; struct db_tx *tx;
  if (owner(L, 1, &d, &tx)) return 2;
  size_t n;
  const char *s = lua_tolstring(L, 2, &n);
  struct lstmt *st = lua_newuserdatauv(L, sizeof *st, 1);
  memset(st, 0, sizeof *st);
  st->sql = xmalloc(n + 1);
  memcpy(st->sql, s, n + 1);
  st->len = n;
  st->d = d;
  db_ref(d);
  luaL_setmetatable(L, STMT_MT);
  if (tx) { lua_pushvalue(L, 1); lua_setiuservalue(L, -2, 1); }   /* runs on the Tx */
  return 1;
}

static int o_prepare(lua_State *L) {
  struct db *d; struct db_tx *tx;
  if (owner(L, 1, &d, &tx)) return 2;
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  lua_settop(L, 2);
  return run(L, d, tx, DBO_PREPARE, s, n, 0, prepare_k);
}

/* ---- DB ---- */

static struct ldb *check_db(lua_State *L) {
  struct ldb *b = luaL_checkudata(L, 1, DB_MT);
  if (!b->d) luaL_error(L, "sql: the database handle was released");
  return b;
}

static int db_begin(lua_State *L) {
  struct ldb *b = check_db(L);
  int iso = DBI_DEFAULT, ro = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "isolation");
    if (!lua_isnil(L, -1)) {
      iso = (int)luaL_checkinteger(L, -1);
      if (iso < DBI_DEFAULT || iso > DBI_LINEARIZABLE) return errors_fail(L, EK_INVALID, "sql: unknown isolation level %d", iso);
    }
    lua_getfield(L, 2, "read_only");
    ro = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  struct task *t = task_check_blocking(L, "sql");
  struct db_req *r = db_req_new(DBO_BEGIN, "", 0);
  r->isolation = iso;
  r->read_only = ro;
  return park(L, t, b->d, r, NULL);
}

static int db_type(lua_State *L) { lua_pushstring(L, check_db(L)->d->drv->name); return 1; }

static int db_stats_l(lua_State *L) {
  struct db_stats st;
  db_stats(check_db(L)->d, &st);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, st.max_open); lua_setfield(L, -2, "max_open_connections");
  lua_pushinteger(L, st.open); lua_setfield(L, -2, "open_connections");
  lua_pushinteger(L, st.in_use); lua_setfield(L, -2, "in_use");
  lua_pushinteger(L, st.idle); lua_setfield(L, -2, "idle");
  lua_pushinteger(L, st.queued); lua_setfield(L, -2, "wait_count");
  lua_pushinteger(L, st.served); lua_setfield(L, -2, "served");
  return 1;
}

static int db_release(lua_State *L) {
  struct ldb *b = luaL_checkudata(L, 1, DB_MT);
  db_unref(b->d);
  b->d = NULL;
  lua_pushboolean(L, 1);
  return 1;
}

static int db_gc(lua_State *L) {
  struct ldb *b = luaL_checkudata(L, 1, DB_MT);
  db_unref(b->d);
  b->d = NULL;
  return 0;
}

/* ---- Tx ---- */

static int untrack(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_getfield(L, LUA_REGISTRYINDEX, OPEN_KEY) == LUA_TTABLE) {
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
  return 0;
}

static int tx_end(lua_State *L, int op) {
  struct ltx *x = luaL_checkudata(L, 1, TX_MT);
  if (x->state != TX_OPEN) return errors_fail(L, EK_INVALID, "sql: the transaction is already committed or rolled back");
  struct task *t = task_check_blocking(L, "sql");
  x->state = TX_DONE;                             /* nothing more may be queued on it */
  untrack(L, 1);
  struct db_req *r = db_req_new(op, "", 0);
  r->tx = x->tx;
  x->tx = NULL;                                   /* the driver frees it when this completes */
  return park(L, t, x->d, r, NULL);
}

static int tx_commit(lua_State *L) { return tx_end(L, DBO_COMMIT); }
static int tx_rollback(lua_State *L) { return tx_end(L, DBO_ROLLBACK); }

static int tx_savepoint_op(lua_State *L, int op) {
  struct db *d; struct db_tx *tx;
  if (owner(L, 1, &d, &tx)) return 2;
  size_t n;
  const char *name = luaL_checklstring(L, 2, &n);
  int ok = n > 0 && n <= 128 && (name[0] == '_' || ((name[0] | 32) >= 'a' && (name[0] | 32) <= 'z'));
  for (size_t i = 0; ok && i < n; i++)
    ok = name[i] == '_' || (name[i] >= '0' && name[i] <= '9') || ((name[i] | 32) >= 'a' && (name[i] | 32) <= 'z');
  if (!ok) return errors_fail(L, EK_INVALID, "sql: a savepoint name is an identifier ([A-Za-z_][A-Za-z0-9_]*, at most 128 bytes)");
  return run(L, d, tx, op, name, n, 0, NULL);
}

static int tx_savepoint(lua_State *L) { return tx_savepoint_op(L, DBO_SAVEPOINT); }
static int tx_rollback_to(lua_State *L) { return tx_savepoint_op(L, DBO_ROLLBACK_TO); }
static int tx_release(lua_State *L) { return tx_savepoint_op(L, DBO_RELEASE); }

static int tx_gc(lua_State *L) {
  struct ltx *x = luaL_checkudata(L, 1, TX_MT);
  if (x->state == TX_OPEN && x->tx) rollback_async(x->d, x->tx);
  x->state = TX_DONE;
  x->tx = NULL;
  db_unref(x->d);
  x->d = NULL;
  return 0;
}

/* The end of a function state's call: every Tx it began and left open is rolled back. */
static void call_end(struct proc *p, struct call_hook *h) {
  lua_State *L = p->L;
  if (lua_getfield(L, LUA_REGISTRYINDEX, OPEN_KEY) != LUA_TTABLE) { lua_pop(L, 1); return; }
  int n = 0;
  for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) {
    struct ltx *x = luaL_testudata(L, -2, TX_MT);
    if (!x || x->state != TX_OPEN) continue;
    rollback_async(x->d, x->tx);
    x->state = TX_DONE;
    x->tx = NULL;
    n++;
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, OPEN_KEY);
  if (n) log_warn("sql: %d transaction%s left open by a call of %s rolled back", n, n > 1 ? "s" : "", p->pidstr);
}

/* Remembers the Tx at idx for the end of the current call (function states only). */
static void track_tx(lua_State *L, int idx) {
  struct proc *p = proc_of(L);
  if (!p->call) return;
  idx = lua_absindex(L, idx);
  if (lua_getfield(L, LUA_REGISTRYINDEX, OPEN_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, OPEN_KEY);
  }
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, HOOK_KEY);
  struct call_hook *h = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (h) proc_on_call_end(p, h);
}

/* ---- Stmt ---- */

static struct lstmt *check_stmt(lua_State *L, struct db **d, struct db_tx **tx, int *over) {
  struct lstmt *st = luaL_checkudata(L, 1, STMT_MT);
  if (st->closed) luaL_error(L, "sql: the statement is closed");
  *over = 0;
  *d = st->d;
  *tx = NULL;
  if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA) {
    struct ltx *x = lua_touserdata(L, -1);
    if (x->state != TX_OPEN) *over = 1;
    *tx = x->tx;
  }
  lua_pop(L, 1);
  return st;
}

static int stmt_run(lua_State *L, int op) {
  struct db *d; struct db_tx *tx; int over;
  struct lstmt *st = check_stmt(L, &d, &tx, &over);
  if (over) return errors_fail(L, EK_INVALID, "sql: the statement's transaction is already committed or rolled back");
  return run(L, d, tx, op, st->sql, st->len, 2, NULL);
}

static int stmt_query(lua_State *L) { return stmt_run(L, DBO_QUERY); }
static int stmt_execute(lua_State *L) { return stmt_run(L, DBO_EXEC); }

static int stmt_close(lua_State *L) {
  struct lstmt *st = luaL_checkudata(L, 1, STMT_MT);
  st->closed = 1;
  lua_pushboolean(L, 1);
  return 1;
}

static int stmt_gc(lua_State *L) {
  struct lstmt *st = luaL_checkudata(L, 1, STMT_MT);
  free(st->sql);
  st->sql = NULL;
  st->closed = 1;
  db_unref(st->d);
  st->d = NULL;
  return 0;
}

/* ---- module ---- */

static int l_get(lua_State *L) {
  const char *id = luaL_checkstring(L, 1);
  struct dbset *s = rt_find_service(proc_of(L)->rt, "sql");
  struct db *d = s ? dbset_get(s, id) : NULL;
  if (!d) return errors_fail(L, EK_NOT_FOUND, "sql: no database %s (a db.sql.sqlite or db.sql.postgres entry)", id);
  struct ldb *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->d = d;
  luaL_setmetatable(L, DB_MT);
  return 1;
}

static int as_make(lua_State *L, int type) {
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, type);
  lua_setfield(L, -2, "type");
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "value");
  luaL_setmetatable(L, AS_MT);
  return 1;
}

static int as_int(lua_State *L) {
  int ok;
  lua_Integer i = lua_tointegerx(L, 1, &ok);
  if (!ok) return errors_fail(L, EK_INVALID, "sql.as.int: not an integer");
  lua_pushinteger(L, i);
  return 1;
}

static int as_float(lua_State *L) {
  int ok;
  lua_Number f = lua_tonumberx(L, 1, &ok);
  if (!ok) return errors_fail(L, EK_INVALID, "sql.as.float: not a number");
  lua_pushnumber(L, f);
  return 1;
}

static int as_text(lua_State *L) {
  luaL_checkany(L, 1);
  luaL_tolstring(L, 1, NULL);
  return 1;
}

static int as_binary(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_settop(L, 1);
  return as_make(L, DBV_BLOB);
}

static int as_null(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY);
  return 1;
}

static int null_tostring(lua_State *L) { lua_pushstring(L, "sql.NULL"); return 1; }

static const luaL_Reg db_methods[] = {
  {"query", o_query}, {"execute", o_execute}, {"prepare", o_prepare}, {"begin", db_begin},
  {"type", db_type}, {"stats", db_stats_l}, {"release", db_release}, {NULL, NULL}};
static const luaL_Reg tx_methods[] = {
  {"query", o_query}, {"execute", o_execute}, {"prepare", o_prepare}, {"commit", tx_commit},
  {"rollback", tx_rollback}, {"savepoint", tx_savepoint}, {"rollback_to", tx_rollback_to},
  {"release", tx_release}, {NULL, NULL}};
static const luaL_Reg stmt_methods[] = {
  {"query", stmt_query}, {"execute", stmt_execute}, {"close", stmt_close}, {NULL, NULL}};
static const luaL_Reg as_funcs[] = {
  {"int", as_int}, {"float", as_float}, {"text", as_text}, {"binary", as_binary},
  {"null", as_null}, {NULL, NULL}};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  if (gc) { lua_pushcfunction(L, gc); lua_setfield(L, -2, "__gc"); }
  lua_pop(L, 1);
}

static void set_consts(lua_State *L, const char *field, const char *const *names, int strings) {
  lua_newtable(L);
  for (int i = 0; names[i]; i++) {
    if (strings) lua_pushstring(L, names[i + 1]);
    else lua_pushinteger(L, i);
    lua_setfield(L, -2, names[i]);
    if (strings) i++;
  }
  lua_setfield(L, -2, field);
}

int luaopen_sql(lua_State *L) {
  new_class(L, DB_MT, db_methods, db_gc);
  new_class(L, TX_MT, tx_methods, tx_gc);
  new_class(L, STMT_MT, stmt_methods, stmt_gc);
  luaL_newmetatable(L, AS_MT);
  lua_pop(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    lua_newuserdatauv(L, 1, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, NULL_KEY);
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, HOOK_KEY) != LUA_TUSERDATA) {
    struct call_hook *h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    h->fn = call_end;
    lua_setfield(L, LUA_REGISTRYINDEX, HOOK_KEY);
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 8);
  lua_pushcfunction(L, l_get);
  lua_setfield(L, -2, "get");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "NULL");
  lua_remove(L, -2);
  static const char *const types[] = {"SQLITE", "sqlite", "POSTGRES", "postgres", "MYSQL", "mysql", NULL};
  set_consts(L, "type", types, 1);
  static const char *const iso[] = {"DEFAULT", "READ_UNCOMMITTED", "READ_COMMITTED", "WRITE_COMMITTED",
                                    "REPEATABLE_READ", "SNAPSHOT", "SERIALIZABLE", "LINEARIZABLE", NULL};
  set_consts(L, "isolation", iso, 0);
  luaL_newlib(L, as_funcs);
  lua_setfield(L, -2, "as");
  return 1;
}
