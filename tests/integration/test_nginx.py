"""nginx in front of the web server (issue 4, deploy/nginx/): the private
nginx of the test instance ([nginx] host/port of the config), whatever
PROFILE_WEB_URL says.

Proves: security headers on every answer (nginx's own included); one
request id in the nginx access log, the web log and the core log; the
client address reaches the core's audit log (nginx's X-Forwarded-For is
trusted, a client's own is not); pictures are served by nginx itself with
the immutable cache header; too-large bodies get nginx's clear 413 (HTML
for pages, JSON for the API); logins are rate-limited per client address
with 429 + Retry-After; /metrics is not exposed.
"""

import http.client
import json
import os
import random
import re
import time
import unittest

import helpers
import images

NGINX_HOST = helpers.config_value("nginx", "host", "127.0.0.1")
NGINX_PORT = int(helpers.config_value("nginx", "port", "8000"))
LOG_DIR = os.path.join(helpers.REPO_ROOT, helpers.config_value("stack", "var_dir", "var"), "log")


def fresh_loopback():
    """A random 127.x.y.z address (all of 127/8 reaches lo): the suite's own
    127.0.0.1 is exempt from the login limit in etc/test.ini, and a fresh
    address starts with an empty limit_req bucket on every run."""
    n = random.randrange(1, 1 << 16)
    return "127.0.%d.%d" % (2 + n % 250, 2 + (n >> 8) % 250)


def setUpModule():
    if helpers.config_value("nginx", "enabled", "1") != "1":
        raise unittest.SkipTest("[nginx] enabled = 0 in this config")
    try:
        via_nginx("GET", "/healthz")
    except OSError as exc:
        raise RuntimeError("nginx of the test instance does not answer at %s:%d (%s)"
                           % (NGINX_HOST, NGINX_PORT, exc))


def via_nginx(method, path, body=None, headers=None, source=None, token=None):
    hdrs = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    if token is not None:
        hdrs["Cookie"] = "session=" + token
    conn = http.client.HTTPConnection(NGINX_HOST, NGINX_PORT, timeout=30,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return helpers.Response(resp.status, resp.reason, resp.headers, resp.read(), 0.0)
    finally:
        conn.close()


def log_lines(name):
    path = os.path.join(LOG_DIR, name)
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", "replace").splitlines()


def wait_lines(name, pattern, timeout_s=3.0):
    deadline = time.monotonic() + timeout_s
    while True:
        found = [line for line in log_lines(name) if re.search(pattern, line)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


class SecurityHeadersTest(helpers.StackTestCase):

    def assert_security_headers(self, resp):
        csp = resp.headers.get("Content-Security-Policy") or ""
        self.assertIn("frame-ancestors 'none'", csp, resp)
        self.assertIn("default-src 'self'", csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertEqual(resp.headers.get("X-Content-Type-Options"), "nosniff")
        self.assertTrue(resp.headers.get("Referrer-Policy"))
        self.assertRegex(resp.headers.get("X-Request-Id") or "", r"^[0-9a-f]{32}$")
        # one of each, not nginx's plus the web server's
        self.assertEqual(len(resp.headers.get_all("Content-Security-Policy")), 1, resp.headers)
        self.assertEqual(len(resp.headers.get_all("X-Request-Id")), 1, resp.headers)

    def test_proxied_page_has_security_headers(self):
        resp = via_nginx("GET", "/")
        self.assertEqual(resp.status, 200)
        self.assert_security_headers(resp)

    def test_nginx_own_answers_have_security_headers(self):
        for path in ("/metrics", "/pictures/nonexistent.jpg", "/static/style.css"):
            resp = via_nginx("GET", path)
            self.assert_security_headers(resp)

    def test_metrics_are_not_exposed(self):
        resp = via_nginx("GET", "/metrics")
        self.assertEqual(resp.status, 404)
        self.assertNotIn(b"profile_web", resp.body)


class RequestIdTest(helpers.StackTestCase):

    def test_one_request_id_in_nginx_web_and_core_logs(self):
        resp = via_nginx("POST", "/api/v1/login", body={"username": "user903", "password": helpers.PASSWORD})
        self.assertEqual(resp.status, 200, resp)
        rid = resp.headers.get("X-Request-Id")
        self.assertRegex(rid, r"^[0-9a-f]{32}$")
        self.assertTrue(wait_lines("nginx-access.log", r"rid=%s\b" % rid), "not in the nginx access log")
        web = wait_lines("web.log", r"\baccess\b.*\btag=%s\b" % rid)
        self.assertTrue(web, "not in the web access line")
        core = wait_lines("core.log", r"\btag=%s\b.*event=login outcome=success" % rid)
        self.assertTrue(core, "not in the core's login line")
        self.assertIn('user="user903"', core[0])

    def test_client_chosen_request_id_is_replaced_by_nginx(self):
        resp = via_nginx("GET", "/healthz", headers={"X-Request-Id": "forged-id-123"})
        self.assertNotEqual(resp.headers.get("X-Request-Id"), "forged-id-123")


class ClientAddressTest(helpers.StackTestCase):

    def test_client_address_reaches_the_core_audit_log(self):
        # From another loopback address: the core must log it (nginx's X-Forwarded-For,
        # trusted because nginx connects from [nginx] proxy_address), not nginx's own.
        source = fresh_loopback()
        resp = via_nginx("POST", "/api/v1/login", body={"username": "user904", "password": helpers.PASSWORD},
                         source=source)
        self.assertEqual(resp.status, 200, resp)
        rid = resp.headers.get("X-Request-Id")
        core = wait_lines("core.log", r"\btag=%s\b.*event=login" % rid)
        self.assertTrue(core)
        self.assertIn('ip="%s"' % source, core[0])

    def test_client_forwarded_for_is_not_believed(self):
        resp = via_nginx("POST", "/api/v1/login", body={"username": "user905", "password": helpers.PASSWORD},
                         headers={"X-Forwarded-For": "203.0.113.66"})
        self.assertEqual(resp.status, 200, resp)
        rid = resp.headers.get("X-Request-Id")
        core = wait_lines("core.log", r"\btag=%s\b.*event=login" % rid)
        self.assertTrue(core)
        self.assertNotIn("203.0.113.66", core[0])
        self.assertIn('ip="127.0.0.1"', core[0])


class PicturesTest(helpers.StackTestCase):

    def test_pictures_are_served_by_nginx_with_immutable_caching(self):
        token = helpers.login_token(self, "user906")
        resp = via_nginx("PUT", "/api/v1/profile/picture", body=images.png(40, 30),
                         headers={"Content-Type": "image/png"}, token=token)
        self.assertEqual(resp.status, 200, resp)
        url = resp.json()["picture_url"]
        pic = via_nginx("GET", url)
        self.assertEqual(pic.status, 200)
        self.assertEqual(pic.headers.get("Content-Type"), "image/jpeg")
        self.assertEqual(pic.headers.get("Cache-Control"), "public, max-age=31536000, immutable")
        rid = pic.headers.get("X-Request-Id")
        self.assertTrue(wait_lines("nginx-access.log", r"rid=%s\b" % rid))
        # nginx answered from the directory: the web server never saw the request
        time.sleep(0.3)
        self.assertFalse([line for line in log_lines("web.log") if rid in line])

    def test_picture_names_that_are_not_hashes_are_404(self):
        for path in ("/pictures/../etc/passwd", "/pictures/abc.jpg", "/pictures/%2e%2e/x.jpg"):
            self.assertEqual(via_nginx("GET", path).status, 404, path)


class BodyLimitTest(helpers.StackTestCase):

    def big_post(self, path, content_type, size):
        conn = http.client.HTTPConnection(NGINX_HOST, NGINX_PORT, timeout=30)
        try:
            conn.putrequest("POST" if path == "/edit" else "PUT", path)
            conn.putheader("Content-Type", content_type)
            conn.putheader("Content-Length", str(size))
            conn.endheaders()
            resp = conn.getresponse()  # nginx answers from the Content-Length alone
            return helpers.Response(resp.status, resp.reason, resp.headers, resp.read(), 0.0)
        finally:
            conn.close()

    def test_too_large_page_upload_gets_a_clear_413_page(self):
        resp = self.big_post("/edit", "multipart/form-data; boundary=x", 11 * 1024 * 1024)
        self.assertEqual(resp.status, 413)
        self.assertIn("text/html", resp.headers.get("Content-Type"))
        self.assertIn(b"Upload too large", resp.body)
        self.assertIn(b"10 MiB", resp.body)

    def test_too_large_api_upload_gets_a_json_413(self):
        resp = self.big_post("/api/v1/profile/picture", "image/png", 11 * 1024 * 1024)
        helpers.assert_json_error(self, resp, 413)

    def test_too_large_json_body_gets_a_413_naming_the_json_limit(self):
        # Found in a trial: a 70 KB login was told "pictures may be at most 10 MiB".
        for path in ("/api/v1/login", "/api/v1/profile"):
            resp = self.big_post(path, "application/json", 70 * 1024)
            helpers.assert_json_error(self, resp, 413)
            self.assertIn(b"64 KiB", resp.body, path)
            self.assertNotIn(b"picture", resp.body.lower(), path)

    def test_upload_at_the_picture_limit_is_passed_to_the_web_server(self):
        # 10 MiB + a little multipart envelope must not be cut by nginx.
        token = helpers.login_token(self, "user907")
        png = images.png(64, 64)
        body, ctype = helpers.encode_multipart([("nickname", "n707"),
                                                ("picture", "p.png", "image/png", png + bytes(4096))])
        resp = via_nginx("POST", "/edit", body=body, headers={"Content-Type": ctype}, token=token)
        self.assertNotEqual(resp.status, 413)


class LoginRateLimitTest(helpers.StackTestCase):

    def test_login_bursts_get_429_with_retry_after(self):
        burst = int(helpers.config_value("nginx", "login_burst", "10"))
        source = fresh_loopback()
        statuses, limited = [], None
        for _ in range(burst + 5):
            resp = via_nginx("POST", "/api/v1/login", body={"username": "user908", "password": "wrong"},
                             source=source)
            statuses.append(resp.status)
            if resp.status == 429:
                limited = resp
        self.assertIsNotNone(limited, statuses)
        self.assertEqual(statuses[:burst], [401] * burst, "a burst of %d must pass: %s" % (burst, statuses))
        self.assertRegex(limited.headers.get("Retry-After") or "", r"^[1-9][0-9]*$")
        helpers.assert_json_error(self, limited, 429)
        # the HTML login is limited by the same zone and gets a page
        page = via_nginx("POST", "/login", body=b"username=user908&password=wrong",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, source=source)
        self.assertEqual(page.status, 429)
        self.assertIn(b"Too many", page.body)
        # other routes are not limited
        self.assertEqual(via_nginx("GET", "/", source=source).status, 200)
        # and only POST counts
        self.assertEqual(via_nginx("GET", "/api/v1/login", source=source).status, 405)

    def test_successful_answers_carry_no_retry_after(self):
        self.assertIsNone(via_nginx("GET", "/").headers.get("Retry-After"))


if __name__ == "__main__":
    unittest.main()
