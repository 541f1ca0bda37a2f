"""The audit log (issue 2, "Logs"): every key event - login success and
failure (username, client IP), logout, nickname change, picture change -
is one line with timestamp, level, request id, user and outcome; secrets
(passwords, session tokens) never appear.

Reads the log files scripts/stack.sh writes for the running stack,
<[stack] var_dir>/log/web.log and core.log; skipped when they are not
there (a stack run some other way, e.g. logging to journald).
"""

import os
import re
import time
import unittest

import helpers
import images
from helpers import get_profile, login, login_token, patch_nickname, request

LOG_DIR = os.path.join(helpers.REPO_ROOT, helpers.config_value("stack", "var_dir", "var"), "log")
LOG_FILES = [os.path.join(LOG_DIR, name) for name in ("web.log", "core.log")]
TIMESTAMP = re.compile(r"^\S*\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")
LEVEL = re.compile(r"\b(DEBUG|INFO|WARN|WARNING|ERROR)\b", re.IGNORECASE)
REQUEST_ID = re.compile(r"\b(?:rid|request_id|req_id|reqid|request)[=:]\"?([0-9A-Za-z_-]+)")
SUCCESS = re.compile(r"success|succeeded|\bok\b", re.IGNORECASE)
FAILURE = re.compile(r"fail|denied|invalid|wrong|unauthenticated|reject", re.IGNORECASE)


def setUpModule():
    helpers.require_stack()


class LogTail:
    """The lines appended to the stack's log files since creation."""

    def __init__(self):
        self.offsets = {path: os.path.getsize(path) for path in LOG_FILES}

    def lines(self):
        out = []
        for path, offset in self.offsets.items():
            with open(path, "rb") as handle:
                handle.seek(offset)
                out.extend((os.path.basename(path), line) for line in
                           handle.read().decode("utf-8", "replace").splitlines())
        return out

    def wait_for(self, predicate, timeout_s=3.0, enough=bool):
        """Lines (file, text) matching predicate(text), polling until
        enough(lines) holds (default: at least one) or timeout_s passes.
        The web server writes its access line after the response has gone
        out, so a test that needs lines from several files must say so."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [(f, line) for f, line in self.lines() if predicate(line)]
            if enough(found) or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def text(self):
        return "\n".join(line for _, line in self.lines())


class AuditLogTest(helpers.StackTestCase):

    def setUp(self):
        missing = [path for path in LOG_FILES if not os.path.exists(path)]
        if missing:
            self.skipTest("log files not found (stack not run by scripts/stack.sh?): %s" % missing)
        self.tail = LogTail()

    def assert_event(self, user, event_word, outcome=None):
        """Returns the log line(s) about user and event_word; checks each has a
        timestamp, a level and a request id, and the outcome when given."""
        lines = self.tail.wait_for(lambda line: re.search(r"\b%s\b" % re.escape(user), line)
                                   and event_word in line.lower())
        self.assertTrue(lines, "no log line with %r and %r in:\n%s" % (user, event_word, self.tail.text()[-3000:]))
        file, line = lines[0]
        self.assertRegex(line, TIMESTAMP, "%s: no timestamp" % file)
        self.assertRegex(line, LEVEL, "%s: no level" % file)
        self.assertRegex(line, REQUEST_ID, "%s: no request id" % file)
        if outcome is not None:
            self.assertRegex(line, outcome, "%s: outcome missing" % file)
        return lines

    def test_login_success_is_logged_with_user_and_ip(self):
        login_token(self, "user601")
        lines = self.assert_event("user601", "login", SUCCESS)
        self.assertTrue(any("127.0.0.1" in line for _, line in lines), lines)

    def test_login_failure_is_logged_with_user_and_ip(self):
        self.assertEqual(login("user601", "wrong-password")[0].status, 401)
        lines = self.assert_event("user601", "login", FAILURE)
        self.assertTrue(any("127.0.0.1" in line for _, line in lines), lines)

    def test_unknown_user_login_failure_is_logged(self):
        name = "nosuchuser" + helpers.unique_suffix()
        self.assertEqual(login(name, "wrong-password")[0].status, 401)
        self.assert_event(name, "login", FAILURE)

    def test_logout_is_logged(self):
        token = login_token(self, "user602")
        self.tail = LogTail()
        self.assertEqual(request("POST", "/api/v1/logout", body={}, token=token).status, 204)
        self.assert_event("user602", "logout")

    def test_nickname_change_is_logged(self):
        token = login_token(self, "user603")
        self.tail = LogTail()
        self.assertEqual(patch_nickname(token, "logged " + helpers.unique_suffix()).status, 200)
        self.assert_event("user603", "nickname")

    def test_picture_change_is_logged(self):
        token = login_token(self, "user604")
        self.tail = LogTail()
        resp = request("PUT", "/api/v1/profile/picture", body=images.png(16, 16),
                       headers={"Content-Type": "image/png"}, token=token)
        self.assertEqual(resp.status, 200, resp)
        self.assert_event("user604", "picture")

    def test_request_id_links_web_and_core_lines(self):
        login_token(self, "user605")
        lines = self.assert_event("user605", "login", SUCCESS)
        request_id = REQUEST_ID.search(lines[0][1]).group(1)
        self.assertNotIn(request_id, ("0", ""), lines[0])
        both = lambda found: {f for f, _ in found} >= {"web.log", "core.log"}
        found = self.tail.wait_for(lambda line: re.search(r"\b%s\b" % re.escape(request_id), line),
                                   enough=both)
        files = {f for f, _ in found}
        self.assertEqual(files, {"web.log", "core.log"}, "request id %s not in both logs" % request_id)

    def test_untrusted_forwarded_for_is_not_logged_as_client_ip(self):
        proxies = helpers.config_value("web", "trusted_proxies", "")
        if "127.0.0.1" in proxies:
            self.skipTest("127.0.0.1 is a trusted proxy in this config")
        resp = helpers.post_json("/api/v1/login", {"username": "user606", "password": helpers.PASSWORD},
                                 headers={"X-Forwarded-For": "203.0.113.9"})
        self.assertEqual(resp.status, 200, resp)
        lines = self.assert_event("user606", "login", SUCCESS)
        self.assertFalse([line for _, line in lines if "203.0.113.9" in line and "127.0.0.1" not in line],
                         "a spoofed X-Forwarded-For was logged as the client address: %s" % lines)

    def test_passwords_are_never_logged(self):
        canary = "pw-canary-" + helpers.unique_suffix()
        login("user607", canary)
        login("nosuchuser" + helpers.unique_suffix(), canary)
        helpers.post_login_form("user607", canary)
        self.tail.wait_for(lambda line: "user607" in line)
        self.assertNotIn(canary, self.tail.text())

    def test_session_tokens_are_never_logged(self):
        token = login_token(self, "user608")
        get_profile(token)
        request("GET", "/profile", token=token)
        request("POST", "/api/v1/logout", body={}, token=token)
        self.tail.wait_for(lambda line: "logout" in line.lower() and "user608" in line)
        signature = token.rsplit(".", 1)[1]
        self.assertNotIn(signature, self.tail.text(), "a session token was written to the log")


if __name__ == "__main__":
    unittest.main()
