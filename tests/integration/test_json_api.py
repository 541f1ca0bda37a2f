"""The JSON API (/api/v1/...) against the running stack: login, session
cookie, profile, logout, error bodies and nickname rules (issue 2,
"Interfaces" and "Behaviour")."""

import json
import statistics
import time
import unittest

import helpers
from helpers import (assert_json_error, assert_profile_object, get_profile, login, login_token,
                     patch_nickname, post_json, request)

# Users this module may change (nicknames); other modules use other users.
USER_LOGIN = "user101"
USER_NICK = "user102"
USER_RYW = "user103"
USER_LOGOUT = "user104"
USER_TIMING = "user105"


def setUpModule():
    helpers.require_stack()


class LoginTest(helpers.StackTestCase):

    def test_login_returns_200_with_profile_fields(self):
        resp, _ = login(USER_LOGIN)
        body = assert_profile_object(self, resp, USER_LOGIN)
        self.assertEqual(set(body), {"username", "nickname", "picture_url"}, body)
        self.assertTrue(body["nickname"], body)

    def test_login_sets_session_cookie_with_required_attributes(self):
        resp, _ = login(USER_LOGIN)
        self.assertEqual(resp.status, 200, resp)
        cookie = resp.cookie()
        self.assertIsNotNone(cookie, "no session cookie in %r" % resp.headers.get_all("Set-Cookie"))
        self.assertEqual(cookie.value.count("."), 2, "session is not a JWT: %r" % cookie)
        self.assertIs(cookie.attrs.get("httponly"), True, cookie)
        self.assertEqual(str(cookie.attrs.get("samesite", "")).lower(), "lax", cookie)
        self.assertEqual(cookie.attrs.get("path"), "/", cookie)
        self.assertEqual(cookie.max_age(), helpers.TOKEN_TTL_S, cookie)
        self.assertEqual("secure" in cookie.attrs, helpers.COOKIE_SECURE, cookie)

    def test_session_token_carries_required_claims(self):
        _, token = login(USER_LOGIN)
        self.assertTrue(token)
        header, payload, _ = helpers.jwt_parts(token)
        self.assertEqual(header.get("alg"), "HS256", header)
        self.assertEqual(payload.get("sub"), USER_LOGIN, payload)
        # 128 random bits need at least 22 characters in any text encoding.
        self.assertIsInstance(payload.get("jti"), str, payload)
        self.assertGreaterEqual(len(payload["jti"]), 22, payload)
        self.assertNotEqual(helpers.jwt_parts(login(USER_LOGIN)[1])[1]["jti"], payload["jti"])
        now = time.time()
        self.assertLessEqual(abs(payload["iat"] - now), 120, payload)
        self.assertEqual(payload["exp"] - payload["iat"], helpers.TOKEN_TTL_S, payload)

    def test_login_accepts_json_content_type_with_charset(self):
        resp = request("POST", "/api/v1/login", body={"username": USER_LOGIN, "password": helpers.PASSWORD},
                       headers={"Content-Type": "application/json; charset=utf-8"})
        assert_profile_object(self, resp, USER_LOGIN)

    def test_profile_with_session_cookie_returns_200(self):
        token = login_token(self, USER_LOGIN)
        body = assert_profile_object(self, get_profile(token), USER_LOGIN)
        self.assertEqual(set(body), {"username", "nickname", "picture_url"}, body)

    def test_wrong_password_is_401(self):
        resp, token = login(USER_LOGIN, "wrong-password")
        assert_json_error(self, resp, 401)
        self.assertIsNone(resp.cookie(), "a failed login set a session cookie: %r" % resp)

    def test_every_password_length_the_api_accepts_is_checked_not_refused(self):
        # docs/api.md: 1 to 4096 bytes. The core once refused 1025..4096 with a
        # 400 that contradicted the web and the docs (found by a fresh-user trial).
        for n in (1025, 4096):
            resp, _ = login(USER_LOGIN, "p" * n)
            assert_json_error(self, resp, 401)
        resp, _ = login(USER_LOGIN, "p" * 4097)
        assert_json_error(self, resp, 400)

    def test_unknown_user_gets_the_same_answer_as_wrong_password(self):
        wrong, _ = login(USER_LOGIN, "wrong-password")
        unknown, _ = login("nosuchuser" + helpers.unique_suffix(), "wrong-password")
        assert_json_error(self, unknown, 401)
        self.assertEqual(unknown.status, wrong.status)
        self.assertEqual(unknown.body, wrong.body, "bodies differ, which tells users apart")
        self.assertIsNone(unknown.cookie(), unknown)

    def test_unknown_user_takes_about_as_long_as_wrong_password(self):
        # Without the dummy-hash verify an unknown user is answered without
        # paying argon2id and is measurably faster. Interleaved medians.
        wrong, unknown = [], []
        for _ in range(9):
            wrong.append(login(USER_TIMING, "wrong-password")[0].elapsed)
            unknown.append(login("nosuchuser" + helpers.unique_suffix(), "wrong-password")[0].elapsed)
        w, u = statistics.median(wrong), statistics.median(unknown)
        self.assertGreater(u, 0.5 * w, "unknown user median %.1f ms vs wrong password %.1f ms" % (u * 1e3, w * 1e3))

    def test_malformed_login_body_is_400_with_the_documented_code(self):
        # docs/api.md: not JSON (empty, a bare scalar, trailing bytes) is
        # malformed_json; JSON of the wrong shape is invalid_request.
        bodies = [
            (b"{", "malformed_json"),
            (b"not json at all", "malformed_json"),
            (b"", "malformed_json"),
            (b'"user1"', "malformed_json"),
            (b'{"username": "user1", "password": "password123"} trailing', "malformed_json"),
            (b"[]", "invalid_request"),
            (b'{"username": "user1"}', "invalid_request"),
            (b'{"password": "password123"}', "invalid_request"),
            (b'{"username": 1, "password": "password123"}', "invalid_request"),
            (b'{"username": "user1", "password": null}', "invalid_request"),
        ]
        for body, code in bodies:
            with self.subTest(body=body):
                resp = request("POST", "/api/v1/login", body=body, headers={"Content-Type": "application/json"})
                self.assertEqual(assert_json_error(self, resp, 400)["code"], code, resp)
                self.assertIsNone(resp.cookie(), resp)

    def test_oversized_json_body_is_413(self):
        # A JSON body far beyond any valid request is refused, not buffered.
        for path, head, token in (("/api/v1/login", b'{"username":"user1","password":"', None),
                                  ("/api/v1/profile", b'{"nickname":"', "login")):
            with self.subTest(path=path):
                if token:
                    token = login_token(self, USER_NICK)
                method = "POST" if path.endswith("login") else "PATCH"
                resp, _ = helpers.request_large(method, path, 20 * 1024 * 1024, head=head,
                                                headers={"Content-Type": "application/json"}, token=token)
                assert_json_error(self, resp, 413)

    def test_wrong_content_type_on_login_is_415(self):
        body = '{"username": "%s", "password": "%s"}' % (USER_LOGIN, helpers.PASSWORD)
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            with self.subTest(content_type=ctype):
                headers = {"Content-Type": ctype} if ctype else {}
                resp = request("POST", "/api/v1/login", body=body, headers=headers)
                assert_json_error(self, resp, 415)
                self.assertIsNone(resp.cookie(), resp)

    def test_wrong_content_type_on_profile_patch_is_415(self):
        token = login_token(self, USER_NICK)
        before = get_profile(token).json()
        for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
            with self.subTest(content_type=ctype):
                headers = {"Content-Type": ctype} if ctype else {}
                resp = request("PATCH", "/api/v1/profile", body='{"nickname": "csrf-%s"}' % helpers.unique_suffix(),
                               headers=headers, token=token)
                assert_json_error(self, resp, 415)
        self.assertEqual(get_profile(token).json(), before)

    def test_wrong_content_type_on_logout_is_415_and_session_survives(self):
        token = login_token(self, USER_LOGOUT)
        resp = request("POST", "/api/v1/logout", body=b"", headers={"Content-Type": "text/plain"}, token=token)
        assert_json_error(self, resp, 415)
        assert_profile_object(self, get_profile(token), USER_LOGOUT)

    def test_wrong_content_type_on_picture_upload_is_415(self):
        token = login_token(self, USER_NICK)
        before = get_profile(token).json()
        for ctype in ("text/plain", "application/octet-stream", "application/json", None):
            with self.subTest(content_type=ctype):
                headers = {"Content-Type": ctype} if ctype else {}
                resp = request("PUT", "/api/v1/profile/picture", body=b"\x89PNG\r\n\x1a\n", headers=headers,
                               token=token)
                assert_json_error(self, resp, 415)
        self.assertEqual(get_profile(token).json(), before)


class SessionTest(helpers.StackTestCase):

    def test_logout_returns_204_and_clears_cookie(self):
        token = login_token(self, USER_LOGOUT)
        resp = request("POST", "/api/v1/logout", body={}, token=token)
        self.assertEqual(resp.status, 204, resp)
        self.assertEqual(resp.body, b"", resp)
        cookie = resp.cookie()
        self.assertIsNotNone(cookie, "logout did not clear the cookie: %r" % resp.headers.get_all("Set-Cookie"))
        self.assertEqual(cookie.value, "", cookie)
        self.assertEqual(cookie.max_age(), 0, cookie)
        self.assertEqual(cookie.attrs.get("path"), "/", cookie)

    def test_logged_out_token_is_rejected_although_signature_is_valid(self):
        token = login_token(self, USER_LOGOUT)
        assert_profile_object(self, get_profile(token), USER_LOGOUT)
        self.assertEqual(request("POST", "/api/v1/logout", body={}, token=token).status, 204)
        assert_json_error(self, get_profile(token), 401)
        assert_json_error(self, patch_nickname(token, "after-logout"), 401)

    def test_logout_ends_only_its_own_session(self):
        first = login_token(self, USER_LOGOUT)
        second = login_token(self, USER_LOGOUT)
        self.assertNotEqual(first, second, "two logins produced the same token")
        self.assertEqual(request("POST", "/api/v1/logout", body={}, token=first).status, 204)
        assert_json_error(self, get_profile(first), 401)
        assert_profile_object(self, get_profile(second), USER_LOGOUT)

    def test_profile_without_cookie_is_401(self):
        assert_json_error(self, request("GET", "/api/v1/profile"), 401)

    def test_profile_with_garbage_token_is_401(self):
        for token in ("garbage", "a.b.c", "", "..", "x" * 5000):
            with self.subTest(token=token[:20]):
                assert_json_error(self, get_profile(token), 401)

    def test_profile_with_expired_looking_token_is_401(self):
        # A real token whose payload is rewritten to have expired an hour
        # ago (the signature no longer matches, and exp is in the past).
        token = login_token(self, USER_LOGIN)
        header, payload, signature = token.split(".")
        claims = helpers.jwt_parts(token)[1]
        claims["iat"] = int(time.time()) - 7200
        claims["exp"] = int(time.time()) - 3600
        forged = "%s.%s.%s" % (header, helpers.b64url_encode(_compact_json(claims)), signature)
        assert_json_error(self, get_profile(forged), 401)

    def test_patch_without_cookie_is_401(self):
        assert_json_error(self, request("PATCH", "/api/v1/profile", body={"nickname": "nobody"}), 401)

    def test_picture_upload_without_cookie_is_401(self):
        resp = request("PUT", "/api/v1/profile/picture", body=b"\x89PNG\r\n\x1a\n",
                       headers={"Content-Type": "image/png"})
        assert_json_error(self, resp, 401)


def _compact_json(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


class ErrorShapeTest(helpers.StackTestCase):

    def test_every_api_error_has_code_and_message(self):
        token = login_token(self, USER_NICK)
        cases = {
            "wrong password": (post_json("/api/v1/login", {"username": USER_NICK, "password": "x"}), 401),
            "malformed login": (request("POST", "/api/v1/login", body=b"{",
                                        headers={"Content-Type": "application/json"}), 400),
            "wrong content type": (request("POST", "/api/v1/login", body=b"{}",
                                           headers={"Content-Type": "text/plain"}), 415),
            "no session": (request("GET", "/api/v1/profile"), 401),
            "bad nickname": (patch_nickname(token, ""), 422),
            "bad picture": (request("PUT", "/api/v1/profile/picture", body=b"not an image",
                                    headers={"Content-Type": "image/png"}, token=token), 415),
            "unknown endpoint": (request("GET", "/api/v1/no-such-endpoint"), 404),
        }
        for name, (resp, status) in cases.items():
            with self.subTest(case=name):
                assert_json_error(self, resp, status)

    def test_unsupported_method_on_api_is_a_json_error(self):
        resp = request("DELETE", "/api/v1/profile")
        self.assertIn(resp.status, (404, 405), resp)
        assert_json_error(self, resp, resp.status)


class NicknameTest(helpers.StackTestCase):

    @classmethod
    def setUpClass(cls):
        resp, cls.token = login(USER_NICK)
        if resp.status != 200:
            raise AssertionError("login of %s failed: %r" % (USER_NICK, resp))

    def assert_round_trip(self, nickname, expected=None):
        expected = nickname if expected is None else expected
        resp = patch_nickname(self.token, nickname)
        body = assert_profile_object(self, resp, USER_NICK)
        self.assertEqual(body["nickname"].encode("utf-8"), expected.encode("utf-8"), "PATCH answer")
        again = assert_profile_object(self, get_profile(self.token), USER_NICK)
        self.assertEqual(again["nickname"].encode("utf-8"), expected.encode("utf-8"), "GET after PATCH")
        relogin, _ = login(USER_NICK)
        self.assertEqual(assert_profile_object(self, relogin, USER_NICK)["nickname"].encode("utf-8"),
                         expected.encode("utf-8"), "login after PATCH")

    def test_patch_returns_the_whole_updated_object(self):
        before = get_profile(self.token).json()
        nickname = "whole-" + helpers.unique_suffix()
        body = assert_profile_object(self, patch_nickname(self.token, nickname), USER_NICK)
        self.assertEqual(body, {"username": USER_NICK, "nickname": nickname, "picture_url": before["picture_url"]})

    def test_emoji_cjk_nickname_round_trips_byte_exact(self):
        self.assert_round_trip("Zoë 🚀 李")

    def test_cjk_nickname_round_trips_byte_exact(self):
        self.assert_round_trip("李小龍の日本語한국어")

    def test_combining_marks_are_kept_unnormalised(self):
        # 'e' + U+0301 must not become the precomposed U+00E9 (NFC).
        self.assert_round_trip("Jose\u0301 Cafe\u0301 n\u0303")

    def test_supplementary_plane_and_zwj_sequences_round_trip(self):
        self.assert_round_trip("👩\u200d💻 𝄞 🇩🇪")

    def test_64_code_points_are_accepted(self):
        for nickname in ("a" * 64, "李" * 64, "🚀" * 64, "e\u0301" * 32):
            with self.subTest(nickname=nickname[:4], length=len(nickname)):
                self.assertEqual(len(nickname), 64)
                self.assert_round_trip(nickname)

    def test_65_code_points_are_422(self):
        before = get_profile(self.token).json()
        for nickname in ("a" * 65, "李" * 65, "🚀" * 65, "e\u0301" * 32 + "x"):
            with self.subTest(nickname=nickname[:4], length=len(nickname)):
                self.assertEqual(len(nickname), 65)
                assert_json_error(self, patch_nickname(self.token, nickname), 422)
        self.assertEqual(get_profile(self.token).json(), before)

    def test_empty_or_whitespace_nickname_is_422(self):
        before = get_profile(self.token).json()
        for nickname in ("", " ", "    ", " \u3000 "):
            with self.subTest(nickname=nickname):
                assert_json_error(self, patch_nickname(self.token, nickname), 422)
        self.assertEqual(get_profile(self.token).json(), before)

    def test_control_characters_are_422(self):
        before = get_profile(self.token).json()
        for nickname in ("ab\u0001cd", "bell\u0007", "line\nbreak", "esc\u001b[31m", "del\u007f",
                         "c1\u0085x", "c1\u009bx", "tab\tinside"):
            with self.subTest(nickname=nickname):
                assert_json_error(self, patch_nickname(self.token, nickname), 422)
        self.assertEqual(get_profile(self.token).json(), before)

    def test_invalid_utf8_nickname_is_refused(self):
        before = get_profile(self.token).json()
        bodies = [b'{"nickname": "bad \xff byte"}', b'{"nickname": "overlong \xc0\xaf"}',
                  b'{"nickname": "lone \\ud800 surrogate"}', b'{"nickname": "cesu \xed\xa0\x80"}',
                  b'{"nickname": "nul \\u0000 inside"}']
        for body in bodies:
            with self.subTest(body=body):
                resp = request("PATCH", "/api/v1/profile", body=body, headers={"Content-Type": "application/json"},
                               token=self.token)
                self.assertIn(resp.status, (400, 422), resp)
                assert_json_error(self, resp, resp.status)
        self.assertEqual(get_profile(self.token).json(), before)

    def test_nickname_of_wrong_type_is_refused(self):
        for body in (b'{"nickname": 5}', b'{"nickname": null}', b'{"nickname": ["a"]}', b'{}', b'{'):
            with self.subTest(body=body):
                resp = request("PATCH", "/api/v1/profile", body=body, headers={"Content-Type": "application/json"},
                               token=self.token)
                self.assertIn(resp.status, (400, 422), resp)
                assert_json_error(self, resp, resp.status)

    def test_surrounding_whitespace_is_trimmed(self):
        core = "Trim " + helpers.unique_suffix()
        self.assert_round_trip("   %s \t " % core, core)

    def test_surrounding_unicode_whitespace_is_trimmed(self):
        core = "全角 " + helpers.unique_suffix()
        self.assert_round_trip("\u3000\u00a0%s\u2003" % core, core)

    def test_inner_whitespace_is_kept(self):
        self.assert_round_trip("two  spaces " + helpers.unique_suffix())

    def test_read_your_writes_50_times(self):
        for i in range(50):
            nickname = "ryw %d %s 🚀" % (i, helpers.unique_suffix())
            resp = patch_nickname(self.token, nickname)
            self.assertEqual(resp.status, 200, resp)
            got = get_profile(self.token)
            self.assertEqual(got.status, 200, got)
            self.assertEqual(got.json()["nickname"], nickname, "round %d: stale read" % i)


class ReadYourWritesAcrossSessionsTest(helpers.StackTestCase):

    def test_other_session_of_same_user_sees_the_write(self):
        writer = login_token(self, USER_RYW)
        reader = login_token(self, USER_RYW)
        get_profile(reader)  # warm the cache with the old value
        for i in range(10):
            nickname = "other session %d %s" % (i, helpers.unique_suffix())
            self.assertEqual(patch_nickname(writer, nickname).status, 200)
            self.assertEqual(get_profile(reader).json()["nickname"], nickname, "round %d" % i)


if __name__ == "__main__":
    unittest.main()
