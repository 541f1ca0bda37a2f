"""Health and metrics (issue 4): GET /healthz, GET /readyz and GET /metrics
of the web server, asked directly (not through PROFILE_WEB_URL, which may
be nginx: /metrics is for local scrapers only).

/metrics must be valid Prometheus text exposition format 0.0.4 (every
family declared once with # TYPE before its samples, its samples in one
group, histogram buckets cumulative with +Inf equal to _count) and carry:
requests by route and status, the latency histogram, both RPC pools'
in-use and idle connections, and the core's logins succeeded/failed, cache
hits/misses, MySQL and Redis errors - which must move when those things
happen. /readyz must turn 503 while Redis is down and back to 200 after.
"""

import http.client
import re
import time
import unittest

import helpers
from helpers import login, login_token

WEB_HOST = helpers.config_value("web", "host", "127.0.0.1")
WEB_PORT = int(helpers.config_value("web", "port", "8080"))

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)?\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def setUpModule():
    helpers.require_stack()


def direct(method, path, headers=None, source=None):
    """One request straight to the web server (bypassing nginx)."""
    conn = http.client.HTTPConnection(WEB_HOST, WEB_PORT, timeout=20, source_address=source)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def parse_metrics(testcase, text):
    """Checks the exposition format; returns {(name, frozenset(labels)): value}
    and {family: type}."""
    types, samples, seen_families, current = {}, {}, [], None
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            testcase.assertNotIn(name, types, "family %s declared twice" % name)
            testcase.assertIn(kind, ("counter", "gauge", "histogram", "summary", "untyped"))
            types[name] = kind
            continue
        if line.startswith("#"):
            testcase.assertRegex(line, r"^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+")
            continue
        m = SAMPLE.match(line)
        testcase.assertIsNotNone(m, "not a sample line: %r" % line)
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if re.sub(r"_(bucket|sum|count)$", "", name) in types else name
        testcase.assertIn(family, types, "sample %s before its # TYPE" % name)
        if family != current:
            testcase.assertNotIn(family, seen_families, "samples of %s are not in one group" % family)
            seen_families.append(family)
            current = family
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        value = float(m.group(4))
        testcase.assertNotIn((name, labels), samples, "duplicate sample %s" % line)
        samples[(name, labels)] = value
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


class HealthTest(helpers.StackTestCase):

    def test_healthz_answers_ok(self):
        status, headers, body = direct("GET", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"ok\n")
        self.assertEqual(headers.get("Cache-Control"), "no-store")

    def test_readyz_answers_ready_when_core_mysql_and_redis_answer(self):
        status, _, body = direct("GET", "/readyz")
        self.assertEqual((status, body), (200, b"ready\n"))

    def test_readyz_is_503_while_redis_is_down_and_recovers(self):
        helpers.stack("redis-stop")
        try:
            status, _, body = direct("GET", "/readyz")
            self.assertEqual(status, 503, body)
            self.assertIn(b"not ready", body)
            # /healthz is about this process only: still fine.
            self.assertEqual(direct("GET", "/healthz")[0], 200)
        finally:
            helpers.stack("redis-start")
        ok = helpers.wait_for(lambda: direct("GET", "/readyz")[0] == 200, 10)
        self.assertTrue(ok, "readyz did not recover after Redis came back")


class MetricsTest(helpers.StackTestCase):

    def scrape(self):
        status, headers, body = direct("GET", "/metrics")
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        return parse_metrics(self, body.decode("utf-8"))

    def test_format_is_valid_and_required_families_are_there(self):
        helpers.get("/")  # at least one request of a route
        samples, types = self.scrape()
        self.assertEqual(types.get("profile_web_http_requests_total"), "counter")
        self.assertEqual(types.get("profile_web_http_request_duration_seconds"), "histogram")
        self.assertEqual(types.get("profile_web_rpc_pool_connections"), "gauge")
        for pool in ("fast", "slow"):
            for state in ("in_use", "idle"):
                self.assertIsNotNone(value(samples, "profile_web_rpc_pool_connections", pool=pool, state=state),
                                     "no pool gauge %s/%s" % (pool, state))
        self.assertEqual(value(samples, "profile_core_up"), 1.0)
        for name, labels in (("profile_core_logins_total", {"outcome": "succeeded"}),
                             ("profile_core_logins_total", {"outcome": "failed"}),
                             ("profile_core_profile_cache_total", {"result": "hit"}),
                             ("profile_core_profile_cache_total", {"result": "miss"}),
                             ("profile_core_mysql_errors_total", {}),
                             ("profile_core_redis_errors_total", {}),
                             ("profile_core_nickname_edits_total", {}),
                             ("profile_core_nickname_commits_total", {})):
            self.assertIsNotNone(value(samples, name, **labels), "missing %s%s" % (name, labels))

    def test_histogram_buckets_are_cumulative_and_inf_equals_count(self):
        helpers.get("/")
        samples, _ = self.scrape()
        routes = {dict(l)["route"] for (n, l) in samples if n == "profile_web_http_request_duration_seconds_count"}
        self.assertIn("/", routes)
        for route in routes:
            buckets = sorted(((float("inf") if dict(l)["le"] == "+Inf" else float(dict(l)["le"])), v)
                             for (n, l), v in samples.items()
                             if n == "profile_web_http_request_duration_seconds_bucket" and dict(l)["route"] == route)
            counts = [v for _, v in buckets]
            self.assertEqual(counts, sorted(counts), "buckets of %s not cumulative" % route)
            self.assertEqual(buckets[-1][0], float("inf"))
            self.assertEqual(buckets[-1][1], value(samples, "profile_web_http_request_duration_seconds_count",
                                                   route=route))

    def test_counters_follow_logins_cache_reads_and_statuses(self):
        before, _ = self.scrape()
        self.assertEqual(login("user901", "wrong-password")[0].status, 401)
        token = login_token(self, "user901")
        helpers.get_profile(token)  # warm cache (login filled it): a hit
        helpers.get_profile(token)

        def delta(name, **labels):
            return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

        # The web server counts a request once its response has gone out, so
        # the last one may be counted a moment after the client has it.
        for _ in range(30):
            after, _ = self.scrape()
            if delta("profile_web_http_requests_total", route="/api/v1/profile", status="200") >= 2:
                break
            time.sleep(0.1)

        self.assertGreaterEqual(delta("profile_core_logins_total", outcome="failed"), 1)
        self.assertGreaterEqual(delta("profile_core_logins_total", outcome="succeeded"), 1)
        self.assertGreaterEqual(delta("profile_core_profile_cache_total", result="hit"), 2)
        self.assertGreaterEqual(delta("profile_web_http_requests_total", route="/api/v1/login", status="401"), 1)
        self.assertGreaterEqual(delta("profile_web_http_requests_total", route="/api/v1/login", status="200"), 1)
        self.assertGreaterEqual(delta("profile_web_http_requests_total", route="/api/v1/profile", status="200"), 2)
        self.assertGreaterEqual(delta("profile_web_rpc_calls_total", pool="slow"), 2)

    def test_redis_errors_are_counted(self):
        token = login_token(self, "user902")
        before, _ = self.scrape()
        helpers.stack("redis-stop")
        try:
            self.assertEqual(helpers.get_profile(token).status, 503)
        finally:
            helpers.stack("redis-start")
        helpers.wait_for(lambda: direct("GET", "/readyz")[0] == 200, 10)
        after, _ = self.scrape()
        self.assertGreater(value(after, "profile_core_redis_errors_total"),
                           value(before, "profile_core_redis_errors_total"))

    def test_metrics_are_refused_with_a_proxy_header(self):
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            status, _, _ = direct("GET", "/metrics", headers={header: "127.0.0.1"})
            self.assertEqual(status, 404, "metrics served with %s" % header)

    def test_metrics_are_refused_when_the_peer_is_not_loopback_free_of_proxies(self):
        # Through nginx (if it runs), which always adds X-Forwarded-For and blocks the path.
        if helpers.config_value("nginx", "enabled", "1") != "1":
            self.skipTest("no nginx in this stack")
        host = helpers.config_value("nginx", "host", "127.0.0.1")
        port = int(helpers.config_value("nginx", "port", "8000"))
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        self.assertEqual(resp.status, 404)
        self.assertNotIn(b"profile_", body)

    def test_core_down_is_reported_as_core_up_0(self):
        helpers.stack("core-stop")
        try:
            samples, _ = self.scrape()
            self.assertEqual(value(samples, "profile_core_up"), 0.0)
            self.assertIsNotNone(value(samples, "profile_web_rpc_pool_connections", pool="fast", state="idle"))
        finally:
            helpers.stack("core-start")
        self.assertTrue(helpers.wait_for(lambda: direct("GET", "/readyz")[0] == 200, 10))


if __name__ == "__main__":
    unittest.main()
