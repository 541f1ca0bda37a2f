"""The caches in front of MySQL and argon2id never change an answer.

The core keeps each user's profile (with the stored password hash) in Redis
and remembers recently verified logins (core/credcache.h). These tests prove
what a user sees is what the database says: a cached login still refuses a
wrong password, a login after an edit reports the edit, and concurrent edits
of nickname and picture end in a profile that the next write fully replaces.
"""

import concurrent.futures
import json
import unittest

import helpers
import images
from helpers import PASSWORD, get_profile, login, login_token, patch_nickname, request


def setUpModule():
    helpers.require_stack()


def put_picture(token, data, content_type="image/png"):
    return request("PUT", "/api/v1/profile/picture", body=data,
                   headers={"Content-Type": content_type}, token=token)


class CredentialCacheTest(helpers.StackTestCase):

    def test_wrong_password_is_refused_after_cached_logins(self):
        for _ in range(3):  # the second and third are served by the credential cache
            resp, _ = login("user801")
            self.assertEqual(resp.status, 200, resp)
        for wrong in ("password124", "password12", PASSWORD + " ", "PASSWORD123", "p"):
            resp, token = login("user801", wrong)
            self.assertEqual(resp.status, 401, (wrong, resp))
            self.assertIsNone(token)
        resp, _ = login("user801")
        self.assertEqual(resp.status, 200, resp)

    def test_outdated_hash_is_upgraded_and_the_cache_never_keeps_the_old_one(self):
        # A hash made with another cost (opslimit 3, not the configured 2) is
        # replaced at the next successful login; the profile cache, which
        # carries the hash for later logins, must then hold the new one, or
        # every later login pays argon2id against the old hash for a whole
        # cache lifetime (the bug this test was written for).
        user = "user807"
        old = helpers.argon2id_phc(PASSWORD, 3, 19 * 1024 * 1024)
        helpers.sql("UPDATE users SET password_hash = '%s' WHERE username = '%s'" % (old, user))
        helpers.redis("DEL", "prof:" + user)
        self.assertEqual(login(user)[0].status, 200)
        stored = helpers.sql("SELECT password_hash FROM users WHERE username = '%s'" % user)[0][0]
        self.assertNotEqual(stored, old)
        self.assertIn(",t=%s," % helpers.config_value("password", "opslimit", "2"), stored)
        cached = helpers.wait_for(lambda: helpers.redis("GET", "prof:" + user), 5)
        self.assertEqual(json.loads(cached).get("phc"), stored)
        self.assertEqual(login(user)[0].status, 200)
        self.assertEqual(login(user, "not-" + PASSWORD)[0].status, 401)
        self.assertEqual(helpers.sql(
            "SELECT password_hash FROM users WHERE username = '%s'" % user)[0][0], stored)

    def test_cached_login_of_one_user_never_admits_another(self):
        self.assertEqual(login("user802")[0].status, 200)
        resp, token = login("user803", "not-the-password")
        self.assertEqual(resp.status, 401, resp)
        resp = login("user803")[0]
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["username"], "user803")


class ProfileCacheTest(helpers.StackTestCase):

    def test_login_after_nickname_change_reports_the_new_nickname(self):
        token = login_token(self, "user804")
        nickname = "after-edit " + helpers.unique_suffix()
        self.assertEqual(patch_nickname(token, nickname).status, 200)
        resp, _ = login("user804")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["nickname"], nickname)

    def test_login_after_picture_change_reports_the_new_picture(self):
        token = login_token(self, "user805")
        resp = put_picture(token, images.png(40, 30))
        self.assertEqual(resp.status, 200, resp)
        url = resp.json()["picture_url"]
        resp, _ = login("user805")
        self.assertEqual(resp.json()["picture_url"], url)

    def test_concurrent_nickname_and_picture_edits_end_consistent(self):
        token = login_token(self, "user806")
        pictures = [images.png(20 + i, 20) for i in range(6)]

        def edit(i):
            if i % 4 == 0:
                return put_picture(token, pictures[(i // 4) % len(pictures)]).status
            return patch_nickname(token, "concurrent %d" % i).status

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(edit, range(48)))
        self.assertEqual(set(statuses), {200}, statuses)

        # The next writes win, whatever order the concurrent ones took.
        final = "final " + helpers.unique_suffix()
        resp = put_picture(token, images.png(33, 17))
        self.assertEqual(resp.status, 200, resp)
        picture_url = resp.json()["picture_url"]
        resp = patch_nickname(token, final)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json(), {"username": "user806", "nickname": final,
                                       "picture_url": picture_url})
        self.assertEqual(get_profile(token).json(), resp.json())
        self.assertEqual(login("user806")[0].json(), resp.json())
        self.assertEqual(helpers.get(picture_url).status, 200)


if __name__ == "__main__":
    unittest.main()
