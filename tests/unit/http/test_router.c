/* Unit tests for router.c: building from a registry, specificity, params, 404/405/OPTIONS,
** HEAD for GET, subtree and rest patterns, conflicts. */
#include "registry/registry.h"
#include "http/router.h"
#include "t.h"

static struct registry *load(const char *dir) {
  struct diag d;
  diag_init(&d);
  struct reg_opts o = {.project_dir = "fixtures"};
  struct registry *r = NULL;
  if (registry_load(dir, &o, &r, &d) != 0)
    for (size_t i = 0; i < d.n; i++) printf("  %s\n", d.items[i]);
  diag_free(&d);
  return r;
}

static const char *matched(struct routes *rs, const char *method, const char *path, struct match *m) {
  enum match_result res = routes_match(rs, method, path, m);
  if (res == MATCH_NOT_FOUND) return "404";
  if (res == MATCH_BAD_METHOD) return "405";
  if (res == MATCH_OPTIONS) return "204";
  return m->route->endpoint->name;
}

TEST(routes_are_grouped_by_service) {
  struct registry *r = load("fixtures/http/src");
  if (!r) { CHECK(!"load"); return; }
  struct diag d;
  diag_init(&d);
  struct routes *gw = routes_build(r, "app:gw", &d), *other = routes_build(r, "app:other", &d);
  CHECK_INT(routes_count(gw), 9);
  CHECK_INT(routes_count(other), 1);
  CHECK_STR(routes_at(other, 0)->pattern, "/x/y");
  CHECK_STR(routes_at(gw, 0)->func, "app:h");
  routes_free(gw);
  routes_free(other);
  diag_free(&d);
  registry_unref(r);
}

TEST(matching_and_specificity) {
  struct registry *r = load("fixtures/http/src");
  if (!r) { CHECK(!"load"); return; }
  struct diag d;
  diag_init(&d);
  struct routes *rs = routes_build(r, "app:gw", &d);
  struct match m;
  CHECK_STR(matched(rs, "GET", "/api/tasks", &m), "list");
  CHECK_STR(matched(rs, "POST", "/api/tasks", &m), "create");
  CHECK_STR(matched(rs, "GET", "/api/tasks/mine", &m), "mine");        /* literal beats {id} */
  CHECK_STR(matched(rs, "GET", "/api/tasks/42", &m), "one");
  CHECK_INT(m.nparams, 1);
  CHECK_STR(m.params[0].name, "id");
  CHECK_INT((long long)m.params[0].len, 2);
  CHECK(strncmp(m.params[0].value, "42", 2) == 0);
  CHECK_STR(matched(rs, "GET", "/api/tasks/7/steps/3", &m), "sub");
  CHECK_INT(m.nparams, 2);
  CHECK_STR(m.params[1].name, "step");
  CHECK_STR(matched(rs, "GET", "/api/files/a/b/c.txt", &m), "files");
  CHECK_STR(matched(rs, "GET", "/api/files/", &m), "files");
  CHECK_STR(matched(rs, "GET", "/api/docs/", &m), "docs");
  CHECK_STR(matched(rs, "GET", "/api/docs/x/y", &m), "docs");
  CHECK_STR(matched(rs, "GET", "/healthz", &m), "health");
  CHECK_STR(matched(rs, "GET", "/anything/else", &m), "home");           /* "/" is a subtree */
  CHECK_STR(matched(rs, "HEAD", "/api/tasks/9", &m), "one");             /* GET answers HEAD */
  routes_free(rs);
  diag_free(&d);
  registry_unref(r);
}

TEST(unknown_paths_methods_and_options) {
  struct registry *r = load("fixtures/http/src");
  if (!r) { CHECK(!"load"); return; }
  struct diag d;
  diag_init(&d);
  struct routes *rs = routes_build(r, "app:gw", &d);
  struct match m;
  CHECK_STR(matched(rs, "DELETE", "/api/tasks", &m), "405");
  CHECK_STR(m.allow, "GET, HEAD, POST, OPTIONS");
  CHECK_STR(matched(rs, "OPTIONS", "/api/tasks", &m), "204");
  CHECK_STR(matched(rs, "PUT", "/api/tasks/1", &m), "405");
  CHECK_STR(m.allow, "GET, HEAD, OPTIONS");
  routes_free(rs);
  /* without the catch-all router, unknown paths are 404 */
  rs = routes_build(r, "app:other", &d);
  CHECK_STR(matched(rs, "GET", "/nope", &m), "404");
  CHECK_STR(matched(rs, "GET", "/x/y/z", &m), "404");
  CHECK_STR(matched(rs, "GET", "/x/y", &m), "ex");
  routes_free(rs);
  diag_free(&d);
  registry_unref(r);
}

TEST(same_shape_routes_conflict) {
  struct registry *r = load("fixtures/http-conflict/src");
  if (!r) { CHECK(!"load"); return; }
  struct diag d;
  diag_init(&d);
  CHECK(routes_build(r, "app:gw", &d) == NULL);
  CHECK_INT(d.errors, 1);
  CHECK(d.n == 1 && strstr(d.items[0], "conflicts with app:a"));
  CHECK(d.n == 1 && strstr(d.items[0], "_index.yaml:"));
  diag_free(&d);
  registry_unref(r);
}

int main(void) {
  RUN(routes_are_grouped_by_service);
  RUN(matching_and_specificity);
  RUN(unknown_paths_methods_and_options);
  RUN(same_shape_routes_conflict);
  return T_DONE();
}
