"""The two http_client examples end to end (copied out of the source tree, on ports the test
picks): examples/http-fanout prints a real speed-up of concurrent over one-by-one fetches,
examples/crawler crawls the site it serves to its depth limit, each URL once, with several
fetchers at once."""
import re

import th
from httpd_misbehave import refused_port


def run_example(test, name, entry, env):
    r = th.run(["run", th.copy_example(name), "-x", entry], env=env, timeout=120)
    test.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


class Examples(th.TestCase):
    def test_http_fanout_prints_the_speed_up(self):
        r = run_example(self, "http-fanout", "app:fanout",
                        {"FANOUT_PORT": str(refused_port()), "FANOUT_URLS": "8", "FANOUT_DELAY": "300ms"})
        self.assertIn("fetching 8 URLs, each answered after 300ms", r.stdout)
        for name in ("one by one", "coroutines", "batch"):
            self.assertRegex(r.stdout, r"(?m)^%s\s+8/8 ok in \d+ ms$" % name)
        m = re.search(r"speed-up: ([\d.]+)x \(coroutines\), ([\d.]+)x \(batch\)", r.stdout)
        self.assertTrue(m, r.stdout)
        # eight 300 ms answers at once against one after another: far more than 2x
        self.assertGreater(float(m.group(1)), 2, r.stdout)
        self.assertGreater(float(m.group(2)), 2, r.stdout)
        self.assertIn("served 24 requests", r.stderr)

    def test_crawler_walks_its_site_to_the_depth_limit(self):
        r = run_example(self, "crawler", "app:crawl",
                        {"CRAWL_PORT": str(refused_port()), "CRAWL_FETCHERS": "4"})
        rows = re.findall(r"(?m)^depth (\d)  (\d+|ERR)\s+(\S+)", r.stdout)
        expect = [(0, "/page/1"), (1, "/about"), (1, "/page/2"), (1, "/page/3")]
        expect += [(2, f"/page/{n}") for n in range(4, 8)] + [(3, f"/page/{n}") for n in range(8, 16)]
        self.assertEqual([(int(d), p) for d, _, p in rows], expect, r.stdout)
        status = {p: s for _, s, p in rows}
        self.assertEqual({p for p, s in status.items() if s == "404"}, {"/page/13", "/page/14", "/page/15"})
        self.assertIn("crawled 16 URLs (13 ok, 3 failed) to depth 3 with 4 fetchers", r.stdout)
        self.assertIn("12 links to other hosts not followed", r.stdout)
        self.assertIn("served 16 requests", r.stderr)              # each URL fetched once
        m = re.search(r"app:page: at most (\d+) states at once", r.stderr)
        self.assertTrue(m, r.stderr)
        self.assertGreaterEqual(int(m.group(1)), 2, r.stderr)      # fetchers ran at once

    def test_crawler_depth_limit(self):
        r = run_example(self, "crawler", "app:crawl",
                        {"CRAWL_PORT": str(refused_port()), "CRAWL_DEPTH": "1", "CRAWL_FETCHERS": "2"})
        rows = re.findall(r"(?m)^depth (\d)  (\d+)\s+(\S+)", r.stdout)
        self.assertEqual([p for _, _, p in rows], ["/page/1", "/about", "/page/2", "/page/3"], r.stdout)
        self.assertIn("crawled 4 URLs (4 ok, 0 failed) to depth 1 with 2 fetchers", r.stdout)


if __name__ == "__main__":
    th.main()
