"""Hostile input against the running stack: SQL-looking credentials, bytes
the web server must refuse before they reach the RPC, forged session
tokens, and the proof that pooled web->core connections stay in step
(every answer belongs to its own request) after all of that."""

import concurrent.futures
import hashlib
import hmac
import json
import os
import random
import time
import unittest

import helpers
from helpers import assert_json_error, assert_profile_object, get_profile, login, login_token, post_json, request

SQL_USERNAMES = [
    "' OR '1'='1",
    "user1' --",
    'admin"; DROP TABLE users; --',
    "' OR 1=1 LIMIT 1 -- ",
    "user1' #",
    "user1'/*",
    "%' OR username LIKE '%",
    "\\' OR 1=1 --",
]

# Usernames the web server must refuse with 400 before calling the core.
BAD_USERNAMES = {
    "nul": "user1\u0000",
    "nul_inside": "us\u0000er1",
    "nul_only": "\u0000",
    "control_soh": "user\u0001",
    "control_crlf_header_injection": "user1\r\nX-Injected: 1",
    "control_newline_log_forgery": "user1\n2024-01-01 INFO login ok user=admin",
    "control_escape": "\u001b[31muser1",
    "control_del": "user1\u007f",
    "control_c1": "user1\u0085",
    "padding_4k_letters": "a" * 4096,
    "padding_4k_spaces": "user1" + " " * 4096,
    "padding_4k_nul": "user1" + "\u0000" * 4096,
    "too_long_65": "u" * 65,
    "non_ascii": "üser1",
    "empty": "",
}


def setUpModule():
    helpers.require_stack()


def login_raw(body):
    return request("POST", "/api/v1/login", body=body, headers={"Content-Type": "application/json"})


class SqlInjectionTest(helpers.StackTestCase):

    def test_sql_looking_usernames_fail_to_log_in(self):
        for username in SQL_USERNAMES:
            with self.subTest(username=username):
                resp, token = login(username, helpers.PASSWORD)
                self.assertIn(resp.status, (400, 401), resp)
                assert_json_error(self, resp, resp.status)
                self.assertIsNone(token)

    def test_sql_looking_password_fails_to_log_in(self):
        for password in ("' OR '1'='1", "password123' --", "x' OR 'x'='x"):
            with self.subTest(password=password):
                resp, token = login("user1", password)
                assert_json_error(self, resp, 401)
                self.assertIsNone(token)

    def test_sql_looking_usernames_change_nothing(self):
        before = {user: assert_profile_object(self, login(user)[0], user) for user in ("user1", "user2")}
        for username in SQL_USERNAMES:
            login(username, helpers.PASSWORD)
            login(username, "' OR '1'='1")
        for user in ("user1", "user2"):
            with self.subTest(user=user):
                resp, token = login(user)
                self.assertEqual(assert_profile_object(self, resp, user), before[user])
                self.assertEqual(assert_profile_object(self, get_profile(token), user), before[user])

    def test_username_is_case_sensitive(self):
        resp, token = login("USER1")
        self.assertIn(resp.status, (400, 401), resp)
        self.assertIsNone(token)


class RefusedAtWebServerTest(helpers.StackTestCase):

    def test_usernames_with_nul_control_bytes_or_padding_are_400(self):
        for name, username in BAD_USERNAMES.items():
            with self.subTest(case=name):
                resp, token = login(username, helpers.PASSWORD)
                assert_json_error(self, resp, 400)
                self.assertIsNone(token)

    def test_raw_invalid_utf8_in_username_is_400(self):
        for body in (b'{"username": "user1\xff", "password": "password123"}',
                     b'{"username": "\xc0\xafuser1", "password": "password123"}',
                     b'{"username": "\xed\xa0\x80", "password": "password123"}'):
            with self.subTest(body=body):
                assert_json_error(self, login_raw(body), 400)

    def test_form_login_with_nul_username_is_refused(self):
        resp = helpers.post_login_form("user1\x00")
        self.assertIn(resp.status, (400, 401), resp)
        self.assertIsNone(resp.cookie(), resp)


class PoolInStepTest(helpers.StackTestCase):
    """Thousands of concurrent logins and profile reads, mixed with refused
    input, each checked against its own request: a pool that hands one
    request's answer to another shows up as a wrong username, a 200 for a
    wrong password or a 401 for a right one."""

    THREADS = 16
    LOGINS = 2000

    def test_every_response_matches_its_own_request(self):
        # Refused input first, so any connection it could have desynchronised
        # is in the pool for the run below.
        for username in BAD_USERNAMES.values():
            self.assertEqual(login(username)[0].status, 400)
        readers = {"user%d" % i: login_token(self, "user%d" % i) for i in range(1, 17)}
        rng = random.Random(20240601)
        bad = list(BAD_USERNAMES.values())
        jobs = []
        for i in range(self.LOGINS):
            user = "user%d" % rng.randint(1, 2000)
            roll = rng.random()
            if roll < 0.60:
                jobs.append(("login_ok", user, helpers.PASSWORD))
            elif roll < 0.85:
                jobs.append(("login_wrong", user, "wrong-%d" % i))
            else:
                jobs.append(("login_bad", rng.choice(bad), helpers.PASSWORD))
            if i % 4 == 0:
                reader = rng.choice(sorted(readers))
                jobs.append(("profile", reader, readers[reader]))

        def run(job):
            kind, user, secret = job
            try:
                if kind == "profile":
                    return job, get_profile(secret), None
                return job, login(user, secret)[0], None
            except Exception as exc:  # noqa: BLE001 - reported per job below
                return job, None, exc

        problems = []
        tokens = set()
        counts = {}
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(self.THREADS) as pool:
            for job, resp, exc in pool.map(run, jobs):
                kind, user, _ = job
                counts[kind] = counts.get(kind, 0) + 1
                problem = self.check(job, resp, exc, tokens)
                if problem:
                    problems.append("%s %r: %s" % (kind, user[:40], problem))
        elapsed = time.monotonic() - start
        self.assertEqual(problems, [], "%d of %d responses wrong (%.1f s, %r); first ones:\n%s"
                         % (len(problems), len(jobs), elapsed, counts, "\n".join(problems[:15])))

    @staticmethod
    def check(job, resp, exc, tokens):
        kind, user, _ = job
        if exc is not None:
            return "request failed: %r" % exc
        try:
            body = resp.json()
        except ValueError:
            return "not JSON: %r" % resp
        if kind in ("login_ok", "profile"):
            if resp.status != 200:
                return "status %d, body %r" % (resp.status, body)
            if body.get("username") != user:
                return "answered for %r" % body.get("username")
            if kind == "login_ok":
                cookie = resp.cookie()
                if cookie is None:
                    return "no session cookie"
                sub = helpers.jwt_parts(cookie.value)[1].get("sub")
                if sub != user:
                    return "cookie is for %r" % sub
                if cookie.value in tokens:
                    return "token handed out twice"
                tokens.add(cookie.value)
            return None
        expected = 401 if kind == "login_wrong" else 400
        if resp.status != expected:
            return "status %d (want %d), body %r" % (resp.status, expected, body)
        if resp.cookie() is not None:
            return "refused login set a cookie"
        if not isinstance(body.get("error"), dict):
            return "error body %r" % body
        return None


class ForgedTokenTest(helpers.StackTestCase):
    """Tokens built from a real, live session (its jti is in Redis), so only
    the forgery itself can be the reason for a 401."""

    def setUp(self):
        self.token = login_token(self, "user3")
        assert_profile_object(self, get_profile(self.token), "user3")
        self.header, self.payload, self.signature = self.token.split(".")
        self.claims = helpers.jwt_parts(self.token)[1]

    @staticmethod
    def encode(obj):
        return helpers.b64url_encode(json.dumps(obj, separators=(",", ":")).encode("utf-8"))

    def test_alg_none_token_is_rejected(self):
        for alg in ("none", "None", "NONE", "nOnE"):
            for signature in ("", self.signature):
                with self.subTest(alg=alg, signature=bool(signature)):
                    forged = "%s.%s.%s" % (self.encode({"alg": alg, "typ": "JWT"}), self.payload, signature)
                    assert_json_error(self, get_profile(forged), 401)

    def test_token_signed_with_another_key_is_rejected(self):
        header = self.encode({"alg": "HS256", "typ": "JWT"})
        signing_input = "%s.%s" % (header, self.payload)
        for key in (b"secret", b"", b"\x00" * 32):
            with self.subTest(key=key):
                signature = helpers.b64url_encode(hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest())
                assert_json_error(self, get_profile("%s.%s" % (signing_input, signature)), 401)

    def test_other_algorithm_in_header_is_rejected(self):
        for alg in ("HS384", "HS512", "RS256", "ES256"):
            with self.subTest(alg=alg):
                forged = "%s.%s.%s" % (self.encode({"alg": alg, "typ": "JWT"}), self.payload, self.signature)
                assert_json_error(self, get_profile(forged), 401)

    def test_tampered_payload_is_rejected(self):
        claims = dict(self.claims, sub="user4")
        forged = "%s.%s.%s" % (self.header, self.encode(claims), self.signature)
        resp = get_profile(forged)
        assert_json_error(self, resp, 401)

    def test_extended_expiry_is_rejected(self):
        claims = dict(self.claims, exp=self.claims["exp"] + 86400 * 365)
        forged = "%s.%s.%s" % (self.header, self.encode(claims), self.signature)
        assert_json_error(self, get_profile(forged), 401)

    def test_truncated_signature_is_rejected(self):
        assert_json_error(self, get_profile(self.token[:-4]), 401)



def signing_key_for(token):
    """The test stack's JWT key (from the .env file its config names, as
    raw bytes or as the hex text), verified by reproducing token's
    signature; None when the file is unreadable or neither form matches."""
    path = helpers.config_value("core", "env_file", ".env")
    path = path if os.path.isabs(path) else os.path.join(helpers.REPO_ROOT, path)
    try:
        with open(path, encoding="utf-8") as handle:
            found = [line.split("=", 1)[1].strip().strip("'\"") for line in handle
                     if line.strip().startswith("JWT_SECRET=")]
    except OSError:
        return None
    if not found:
        return None
    signing_input, _, signature = token.rpartition(".")
    candidates = [found[-1].encode("ascii")]
    try:
        candidates.insert(0, bytes.fromhex(found[-1]))
    except ValueError:
        pass
    for key in candidates:
        mac = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
        if helpers.b64url_encode(mac) == signature:
            return key
    return None


class CorrectlySignedTokenTest(helpers.StackTestCase):
    """Tokens signed with the stack's real key: the signature is valid, so
    only the claim checks (libjwt 1.10 checks no time claims) and the
    Redis session lookup can reject them."""

    def setUp(self):
        self.token = login_token(self, "user5")
        self.key = signing_key_for(self.token)
        if self.key is None:
            self.skipTest("the stack's JWT secret is not readable here")
        self.header, self.payload, _ = self.token.split(".")
        self.claims = helpers.jwt_parts(self.token)[1]

    def sign(self, claims):
        payload = helpers.b64url_encode(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        signing_input = "%s.%s" % (self.header, payload)
        mac = hmac.new(self.key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return "%s.%s" % (signing_input, helpers.b64url_encode(mac))

    def test_resigned_token_with_same_claims_is_accepted(self):
        # Proves the forgeries below differ only in what they change.
        assert_profile_object(self, get_profile(self.sign(self.claims)), "user5")

    def test_expired_token_is_rejected_although_session_exists(self):
        now = int(time.time())
        token = self.sign(dict(self.claims, iat=now - 7200, exp=now - 60))
        assert_json_error(self, get_profile(token), 401)

    def test_token_issued_in_the_future_is_rejected(self):
        now = int(time.time())
        token = self.sign(dict(self.claims, iat=now + 86400, exp=now + 86400 + 3600))
        assert_json_error(self, get_profile(token), 401)

    def test_token_without_exp_is_rejected(self):
        claims = dict(self.claims)
        del claims["exp"]
        assert_json_error(self, get_profile(self.sign(claims)), 401)

    def test_token_with_unknown_jti_is_rejected(self):
        token = self.sign(dict(self.claims, jti=helpers.unique_suffix() * 4))
        assert_json_error(self, get_profile(token), 401)

    def test_token_whose_sub_differs_from_its_session_is_rejected(self):
        # The session (jti) belongs to user5; a token naming user6 with it
        # must not read user6's profile.
        resp = get_profile(self.sign(dict(self.claims, sub="user6")))
        self.assertNotEqual(resp.status, 200, "token for user6 accepted with user5's session: %r" % resp)
        assert_json_error(self, resp, 401)


if __name__ == "__main__":
    unittest.main()
