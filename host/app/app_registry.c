/*
** app_registry.c — the registry service of a running host (runtime/regsvc.h): change sets
** from the registry Lua module are queued by any thread and applied on the main thread's
** tick through exactly the path of a hot reload (registry_apply → compile → route check →
** app_reload): a new generation, validated and compiled, swapped as a whole or refused as a
** whole. Applied change sets are kept as an overlay that every later build from the files
** replays (ops the files have since made impossible are dropped with a warning), so a
** runtime change survives file edits until a restart. The last REG_KEEP_VERSIONS adopted
** generations are listed for registry.versions(), the newest REG_KEEP_GENERATIONS with their
** entries (snapshot_at, apply_version).
** Threads: `lock` guards the queue, `stopping` and the version list (read by any thread);
** the overlay and everything else are the main thread's.
*/
#include "app_impl.h"
#include "base/log.h"
#include "base/util.h"
#include "http/router.h"
#include "registry/code.h"
#include "registry/registry.h"
#include "runtime/regsvc.h"
#include "runtime/rt.h"
#include "value/errors.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct app_registry {
  struct reg_service svc;        /* registered as rt service "registry" */
  pthread_mutex_t lock;
  struct reg_change_req **q;     /* FIFO of submitted change sets */
  size_t nq, capq;
  int stopping;
  struct reg_version hist[REG_KEEP_VERSIONS];   /* oldest first */
  struct registry *gens[REG_KEEP_VERSIONS];     /* hist[i]'s generation (a reference) for the
                                                   newest REG_KEEP_GENERATIONS, else NULL */
  size_t nhist;
  char *srcdir;                  /* where file:// of created entries is read */
  struct reg_op *overlay;        /* every applied op, in order (main thread) */
  size_t noverlay;
  int *dropped;                  /* the last replay's dropped ops, until adopted (main thread) */
};

static int submit(void *ud, struct reg_change_req *q) {
  struct app_registry *R = ud;
  pthread_mutex_lock(&R->lock);
  int ok = !R->stopping;
  if (ok && R->nq == R->capq) {
    R->capq = R->capq ? R->capq * 2 : 8;
    R->q = xrealloc(R->q, R->capq * sizeof *R->q);
  }
  if (ok) R->q[R->nq++] = q;
  pthread_mutex_unlock(&R->lock);
  return ok ? 0 : -1;
}

static size_t versions(void *ud, struct reg_version *out, size_t max) {
  struct app_registry *R = ud;
  pthread_mutex_lock(&R->lock);
  size_t n = R->nhist < max ? R->nhist : max;
  memcpy(out, R->hist + (R->nhist - n), n * sizeof *out);
  pthread_mutex_unlock(&R->lock);
  return n;
}

/* Adds gen to the version list (dropping the oldest past REG_KEEP_VERSIONS); returns it. */
static struct registry *generation(void *ud, uint64_t id) {
  struct app_registry *R = ud;
  struct registry *r = NULL;
  pthread_mutex_lock(&R->lock);
  for (size_t i = 0; i < R->nhist && !r; i++)
    if (R->hist[i].id == id && R->gens[i]) r = registry_ref(R->gens[i]);
  pthread_mutex_unlock(&R->lock);
  return r;
}

/* Adds gen to the version list (dropping the oldest past REG_KEEP_VERSIONS, and the entries
** of those past REG_KEEP_GENERATIONS); returns it. */
static struct reg_version record(struct app_registry *R, struct registry *gen, const char *source) {
  struct reg_version v = {registry_version(gen), clock_wall_ns(), source, registry_count(gen)};
  struct registry *old[2] = {NULL, NULL};
  pthread_mutex_lock(&R->lock);
  if (R->nhist == REG_KEEP_VERSIONS) {
    old[0] = R->gens[0];
    R->nhist--;
    memmove(R->hist, R->hist + 1, R->nhist * sizeof *R->hist);
    memmove(R->gens, R->gens + 1, R->nhist * sizeof *R->gens);
  }
  R->hist[R->nhist] = v;
  R->gens[R->nhist++] = registry_ref(gen);
  if (R->nhist > REG_KEEP_GENERATIONS) {
    old[1] = R->gens[R->nhist - REG_KEEP_GENERATIONS - 1];
    R->gens[R->nhist - REG_KEEP_GENERATIONS - 1] = NULL;
  }
  pthread_mutex_unlock(&R->lock);
  registry_unref(old[0]);
  registry_unref(old[1]);
  return v;
}

void app_registry_init(struct app *a, const char *srcdir) {
  struct app_registry *R = xcalloc(1, sizeof *R);
  R->svc = (struct reg_service){R, submit, versions, generation};
  pthread_mutex_init(&R->lock, NULL);
  R->srcdir = xstrdup(srcdir);
  a->registry = R;
  rt_add_service(a->rt, "registry", &R->svc);
  record(R, a->gen, "files");
}

/* ---- applying a change set ---- */

/* Builds base + ops into a generation and its code, checked as `check` does. 0 / -1 (d). */
static int build(struct app *a, struct registry *base, const struct reg_op *ops, size_t n,
                 int strict, int *dropped, struct registry **gen, struct codeset **code,
                 struct diag *d) {
  struct reg_opts o = {.project_dir = a->rt->project_dir};
  *code = NULL;
  if (registry_apply(base, a->registry->srcdir, &o, ops, n, strict, dropped, gen, d) != 0) return -1;
  if ((*code = codeset_build(*gen, a->rt->project_dir, d)) && routes_check_all(*gen, d) == 0) return 0;
  if (*code) codeset_unref(*code);
  registry_unref(*gen);
  *code = NULL;
  *gen = NULL;
  return -1;
}

static char *join_diag(const struct diag *d) {
  struct buf b;
  buf_init(&b);
  for (size_t i = 0; i < d->n; i++) buf_printf(&b, "%s%s", i ? "\n" : "", d->items[i]);
  return buf_steal(&b);
}

/* The last overlay op on id, or -1. */
static long last_on(const struct app_registry *R, const char *id) {
  for (size_t i = R->noverlay; i-- > 0;)
    if (strcmp(R->overlay[i].id, id) == 0) return (long)i;
  return -1;
}

/* Adds an applied op to the overlay, folded into the earlier ops on its id so the overlay
** stays bounded by the ids it touches: per id it is [create], [update], [delete] or
** [delete, create] (an update after a create changes the create, a delete after a create
** removes it, an update or delete after an update replaces it). The op applied, so it does
** not conflict with what the overlay says of its id. */
static void keep_op(struct app_registry *R, const struct reg_op *n) {
  long at = last_on(R, n->id);
  struct reg_op *e = at >= 0 ? &R->overlay[at] : NULL;
  if (e && e->op == REG_OP_CREATE && n->op == REG_OP_UPDATE) {
    reg_op_free(e);
    reg_op_copy(e, n);
    e->op = REG_OP_CREATE;
  } else if (e && e->op == REG_OP_CREATE && n->op == REG_OP_DELETE) {
    reg_op_free(e);
    memmove(e, e + 1, (R->noverlay - (size_t)at - 1) * sizeof *e);
    R->noverlay--;
  } else if (e && e->op == REG_OP_UPDATE) {
    reg_op_free(e);
    reg_op_copy(e, n);
  } else {
    R->overlay = xrealloc(R->overlay, (R->noverlay + 1) * sizeof *R->overlay);
    reg_op_copy(&R->overlay[R->noverlay++], n);
  }
}

static void keep_ops(struct app_registry *R, const struct reg_op *ops, size_t n) {
  for (size_t i = 0; i < n; i++) keep_op(R, &ops[i]);
}

static void apply_one(struct app *a, struct reg_change_req *q) {
  struct diag d;
  diag_init(&d);
  struct registry *gen = NULL;
  struct codeset *code = NULL;
  int rc = build(a, a->gen, q->ops, q->nops, 1, NULL, &gen, &code, &d);
  if (rc == 0 && app_reload(a, gen, code) != 0) {
    diag_add(&d, 1, NULL, 0, "the host could not start the new generation (see its log)");
    rc = -1;
  }
  if (rc == 0) {
    keep_ops(a->registry, q->ops, q->nops);
    q->version = record(a->registry, gen, "runtime");
    q->ok = 1;
    log_info("registry: change set of %zu operation%s applied: generation %llu, %zu entries", q->nops,
             q->nops == 1 ? "" : "s", (unsigned long long)q->version.id, registry_count(gen));
    app_reload_event(a, gen, "registry change set", NULL);
  } else {
    q->kind = EK_INVALID;
    q->error = join_diag(&d);
    log_warn("registry: change set refused, the running generation stays: %s", q->error);
    app_reload_event(a, NULL, "registry change set", q->error);
  }
  if (code) codeset_unref(code);
  if (gen) registry_unref(gen);
  diag_free(&d);
}

/* Takes the oldest queued request, or NULL. */
static struct reg_change_req *take(struct app_registry *R) {
  pthread_mutex_lock(&R->lock);
  struct reg_change_req *q = R->nq ? R->q[0] : NULL;
  if (q) memmove(R->q, R->q + 1, (--R->nq) * sizeof *R->q);
  pthread_mutex_unlock(&R->lock);
  return q;
}

void app_registry_tick(struct app *a) {
  for (struct reg_change_req *q; a->registry && (q = take(a->registry));) {
    if (atomic_load(&q->claim) != REQ_GONE) apply_one(a, q);
    q->done(q);
  }
}

/* ---- file reloads ---- */

int app_registry_overlay(struct app *a, struct registry **reg, struct codeset **code) {
  struct app_registry *R = a->registry;
  if (!R || !R->noverlay) return 0;
  struct diag d;
  diag_init(&d);
  struct registry *gen;
  struct codeset *cs;
  free(R->dropped);
  R->dropped = xcalloc(R->noverlay, sizeof *R->dropped);
  int rc = build(a, *reg, R->overlay, R->noverlay, 0, R->dropped, &gen, &cs, &d);
  for (size_t i = 0; i < d.n; i++) {
    if (rc == 0) log_warn("reload: %s", d.items[i]);
    else log_error("reload: with the runtime changes: %s", d.items[i]);
  }
  diag_free(&d);
  if (rc != 0) return -1;
  codeset_unref(*code);
  registry_unref(*reg);
  *reg = gen;
  *code = cs;
  return 0;
}

void app_registry_adopted(struct app *a, struct registry *reg) {
  struct app_registry *R = a->registry;
  if (!R) return;
  size_t k = 0;
  for (size_t i = 0; i < R->noverlay; i++) {
    if (R->dropped && R->dropped[i]) reg_op_free(&R->overlay[i]);
    else R->overlay[k++] = R->overlay[i];
  }
  R->noverlay = k;
  free(R->dropped);
  R->dropped = NULL;
  record(R, reg, "files");
}

/* ---- stop ---- */

void app_registry_stop(struct app *a) {
  struct app_registry *R = a->registry;
  if (!R) return;
  pthread_mutex_lock(&R->lock);
  R->stopping = 1;
  pthread_mutex_unlock(&R->lock);
  for (struct reg_change_req *q; (q = take(R));) {
    q->kind = EK_UNAVAILABLE;
    q->error = xstrdup("registry: the host is stopping; the change set was not applied");
    q->done(q);
  }
}

void app_registry_free(struct app *a) {
  struct app_registry *R = a->registry;
  if (!R) return;
  app_registry_stop(a);
  for (size_t i = 0; i < R->noverlay; i++) reg_op_free(&R->overlay[i]);
  free(R->overlay);
  free(R->dropped);
  free(R->q);
  free(R->srcdir);
  for (size_t i = 0; i < R->nhist; i++) registry_unref(R->gens[i]);
  pthread_mutex_destroy(&R->lock);
  free(R);
  a->registry = NULL;
}
