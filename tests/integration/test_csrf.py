"""CSRF protection of the HTML forms (issue 5): every form POST (/login,
/edit, /logout) needs the form's synchronizer token, bound to the session
(or, for the login form, to the pre-session cookie), and a cross-site
Origin is refused; a forged POST gets 403 and changes nothing. Also the
pages' Content-Security-Policy and the absence of inline script/style, and
the "session expired" path back to the login page."""

import re
import unittest

import helpers
from helpers import CSRF_COOKIE, CSRF_FIELD, get, get_profile, login_token, post_form, post_multipart

USER_LOGIN = "user211"
USER_EDIT = "user212"
USER_LOGOUT = "user213"
USER_OTHER = "user214"
USER_RESTART = "user215"

EVIL_ORIGIN = "https://evil.example"


def setUpModule():
    helpers.require_stack()


def login_fields(username, csrf):
    return {"username": username, "password": helpers.PASSWORD, CSRF_FIELD: csrf}


class CsrfTestCase(helpers.StackTestCase):

    def assert_refused(self, resp):
        self.assertEqual(resp.status, 403, resp)
        self.assertEqual(resp.content_type, "text/html", resp)
        self.assertIsNone(resp.cookie(), "a refused form POST set the session cookie: %r" % resp)

    def nickname(self, token):
        return get_profile(token).json()["nickname"]


class LoginFormTest(CsrfTestCase):

    def test_login_page_sets_http_only_pre_session_cookie_and_token(self):
        resp = get("/")
        cookie = resp.cookie(CSRF_COOKIE)
        self.assertIsNotNone(cookie, resp.headers.get_all("Set-Cookie"))
        self.assertIs(cookie.attrs.get("httponly"), True, cookie)
        self.assertEqual(str(cookie.attrs.get("samesite", "")).lower(), "lax", cookie)
        self.assertEqual(cookie.attrs.get("path"), "/", cookie)
        csrf = helpers.form_csrf(resp.text)
        self.assertRegex(csrf or "", r"^[A-Za-z0-9_-]{43}$", resp.text)
        self.assertNotEqual(csrf, cookie.value, "the token must not simply repeat the cookie")

    def test_login_page_keeps_an_existing_pre_session_cookie(self):
        pre, csrf = helpers.login_form()
        again = get("/", cookies={CSRF_COOKIE: pre})
        self.assertIsNone(again.cookie(CSRF_COOKIE), again.headers.get_all("Set-Cookie"))
        self.assertEqual(helpers.form_csrf(again.text), csrf)

    def test_login_with_token_and_cookie_works(self):
        pre, csrf = helpers.login_form()
        resp = post_form("/login", login_fields(USER_LOGIN, csrf), cookies={CSRF_COOKIE: pre})
        self.assertEqual(resp.status, 303, resp)
        self.assertIsNotNone(resp.cookie(), resp)

    def test_login_without_token_is_403_and_shows_a_fresh_form(self):
        pre, _ = helpers.login_form()
        resp = post_form("/login", {"username": USER_LOGIN, "password": helpers.PASSWORD},
                         cookies={CSRF_COOKIE: pre})
        self.assert_refused(resp)
        self.assertIn("log in again", resp.text)
        # The answer is a usable login form: retrying with its token works.
        retry = post_form("/login", login_fields(USER_LOGIN, helpers.form_csrf(resp.text)),
                          cookies={CSRF_COOKIE: pre})
        self.assertEqual(retry.status, 303, retry)

    def test_login_without_pre_session_cookie_is_403(self):
        # A cross-site form can copy a token from a page it fetched, but not
        # the browser's HttpOnly cookie it is bound to.
        _, csrf = helpers.login_form()
        self.assert_refused(post_form("/login", login_fields(USER_LOGIN, csrf)))

    def test_login_with_token_of_another_pre_session_is_403(self):
        _, attacker_csrf = helpers.login_form()
        victim_pre, _ = helpers.login_form()
        self.assert_refused(post_form("/login", login_fields(USER_LOGIN, attacker_csrf),
                                      cookies={CSRF_COOKIE: victim_pre}))

    def test_login_from_another_origin_is_403(self):
        pre, csrf = helpers.login_form()
        resp = post_form("/login", login_fields(USER_LOGIN, csrf), cookies={CSRF_COOKIE: pre},
                         headers={"Origin": EVIL_ORIGIN})
        self.assert_refused(resp)

    def test_login_from_our_own_origin_works(self):
        pre, csrf = helpers.login_form()
        resp = post_form("/login", login_fields(USER_LOGIN, csrf), cookies={CSRF_COOKIE: pre},
                         headers={"Origin": helpers.BASE_URL})
        self.assertEqual(resp.status, 303, resp)

    def test_opaque_null_origin_is_403(self):
        pre, csrf = helpers.login_form()
        resp = post_form("/login", login_fields(USER_LOGIN, csrf), cookies={CSRF_COOKIE: pre},
                         headers={"Origin": "null"})
        self.assert_refused(resp)


class EditFormTest(CsrfTestCase):

    def test_edit_with_the_page_token_works(self):
        token = login_token(self, USER_EDIT)
        nickname = "csrf ok " + helpers.unique_suffix()
        resp = post_multipart("/edit", [(CSRF_FIELD, helpers.session_csrf(token)), ("nickname", nickname)],
                              token=token)
        self.assertEqual(resp.status, 303, resp)
        self.assertEqual(self.nickname(token), nickname)

    def test_forged_edit_without_token_is_403_and_changes_nothing(self):
        token = login_token(self, USER_EDIT)
        before = self.nickname(token)
        resp = post_multipart("/edit", [("nickname", "forged " + helpers.unique_suffix())], token=token)
        self.assertEqual(resp.status, 403, resp)
        self.assertEqual(resp.content_type, "text/html", resp)
        self.assertIn("nothing was changed", resp.text)
        self.assertEqual(self.nickname(token), before)

    def test_edit_with_wrong_or_truncated_token_is_403(self):
        token = login_token(self, USER_EDIT)
        before = self.nickname(token)
        good = helpers.session_csrf(token)
        flipped = ("A" if good[0] != "A" else "B") + good[1:]
        for bad in ("", "x", good[:-1], flipped, good + "A"):
            with self.subTest(token=bad):
                resp = post_multipart("/edit", [(CSRF_FIELD, bad), ("nickname", "forged " + helpers.unique_suffix())],
                                      token=token)
                self.assertEqual(resp.status, 403, resp)
        self.assertEqual(self.nickname(token), before)

    def test_token_of_another_session_is_403(self):
        # Tokens are bound to the session: one from the attacker's own
        # session (or an earlier session of the same user) does not work.
        victim = login_token(self, USER_EDIT)
        attacker = login_token(self, USER_OTHER)
        same_user_other_session = login_token(self, USER_EDIT)
        before = self.nickname(victim)
        for other in (attacker, same_user_other_session):
            csrf = helpers.session_csrf(other)
            self.assertNotEqual(csrf, helpers.session_csrf(victim))
            resp = post_multipart("/edit", [(CSRF_FIELD, csrf), ("nickname", "forged " + helpers.unique_suffix())],
                                  token=victim)
            self.assertEqual(resp.status, 403, resp)
        self.assertEqual(self.nickname(victim), before)

    def test_login_form_token_does_not_pass_as_a_session_token(self):
        token = login_token(self, USER_EDIT)
        before = self.nickname(token)
        _, login_csrf = helpers.login_form()
        resp = post_multipart("/edit", [(CSRF_FIELD, login_csrf), ("nickname", "forged")], token=token)
        self.assertEqual(resp.status, 403, resp)
        self.assertEqual(self.nickname(token), before)

    def test_cross_origin_edit_is_403_even_with_a_valid_token(self):
        token = login_token(self, USER_EDIT)
        before = self.nickname(token)
        resp = post_multipart("/edit", [(CSRF_FIELD, helpers.session_csrf(token)), ("nickname", "forged")],
                              token=token, headers={"Origin": EVIL_ORIGIN})
        self.assertEqual(resp.status, 403, resp)
        self.assertEqual(self.nickname(token), before)

    def test_token_does_not_reveal_the_session(self):
        token = login_token(self, USER_EDIT)
        csrf = helpers.session_csrf(token)
        for part in token.split("."):
            self.assertNotIn(csrf, part)
            self.assertNotIn(part[:16], csrf)


class LogoutFormTest(CsrfTestCase):

    def test_forged_logout_is_403_and_the_session_lives_on(self):
        token = login_token(self, USER_LOGOUT)
        for fields, headers in (({}, {}),
                                ({CSRF_FIELD: "forged"}, {}),
                                ({CSRF_FIELD: helpers.session_csrf(token, "/profile")}, {"Origin": EVIL_ORIGIN})):
            with self.subTest(fields=fields, headers=headers):
                resp = post_form("/logout", fields, token=token, headers=headers)
                self.assertEqual(resp.status, 403, resp)
                self.assertIsNone(resp.cookie(), resp)
        helpers.assert_profile_object(self, get_profile(token), USER_LOGOUT)

    def test_logout_with_the_page_token_ends_the_session(self):
        token = login_token(self, USER_LOGOUT)
        csrf = helpers.session_csrf(token, "/profile")
        resp = post_form("/logout", {CSRF_FIELD: csrf}, token=token)
        self.assertEqual(resp.status, 303, resp)
        self.assertEqual(resp.location_path, "/", resp)
        helpers.assert_json_error(self, get_profile(token), 401)


class WebRestartTest(CsrfTestCase):

    def test_forms_rendered_before_a_web_restart_still_post(self):
        # The key comes from CSRF_SECRET ([web] env_file), so every web
        # process and every restart accept the same tokens.
        token = login_token(self, USER_RESTART)
        csrf = helpers.session_csrf(token)
        pre, login_csrf = helpers.login_form()
        helpers.stack("web-stop")
        helpers.stack("web-start")
        self.assertTrue(helpers.wait_for(lambda: get("/").status == 200, 10))
        nickname = "after restart " + helpers.unique_suffix()
        resp = post_multipart("/edit", [(CSRF_FIELD, csrf), ("nickname", nickname)], token=token)
        self.assertEqual(resp.status, 303, resp)
        self.assertEqual(self.nickname(token), nickname)
        resp = post_form("/login", login_fields(USER_RESTART, login_csrf), cookies={CSRF_COOKIE: pre})
        self.assertEqual(resp.status, 303, resp)


class PagePolicyTest(CsrfTestCase):

    def pages(self):
        token = login_token(self, USER_OTHER)
        return {"/": get("/"), "/profile": get("/profile", token=token), "/edit": get("/edit", token=token),
                "404": get("/no-such-page")}

    def test_csp_forbids_inline_script_and_foreign_form_targets(self):
        for name, resp in self.pages().items():
            with self.subTest(page=name):
                csp = resp.headers.get("Content-Security-Policy") or ""
                self.assertIn("default-src 'self'", csp)
                self.assertIn("form-action 'self'", csp)
                self.assertIn("frame-ancestors 'none'", csp)
                self.assertNotIn("unsafe-inline", csp)
                self.assertNotIn("unsafe-eval", csp)

    def test_pages_have_no_inline_script_style_or_handlers(self):
        for name, resp in self.pages().items():
            with self.subTest(page=name):
                page = resp.text
                self.assertIsNone(re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), page)
                self.assertIsNone(re.search(r"<style\b", page), page)
                self.assertIsNone(re.search(r"\sstyle=", page), page)
                self.assertIsNone(re.search(r"\son[a-z]+=", page), page)
                self.assertRegex(page, r'<html lang="en">')

    def test_every_form_posts_with_a_csrf_field(self):
        for name, resp in self.pages().items():
            with self.subTest(page=name):
                forms = re.findall(r"(?s)<form\b.*?</form>", resp.text)
                for form in forms:
                    self.assertRegex(form, r'name="%s" value="[A-Za-z0-9_-]{43}"' % CSRF_FIELD, form)

    def test_edit_script_is_served_as_javascript(self):
        resp = get("/static/edit.js")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.content_type, "text/javascript", resp)


class SessionExpiredTest(CsrfTestCase):

    def test_dead_session_goes_to_login_page_saying_log_in_again(self):
        token = login_token(self, USER_OTHER)
        csrf = helpers.session_csrf(token)
        self.assertEqual(helpers.request("POST", "/api/v1/logout", body={}, token=token).status, 204)
        for resp in (get("/profile", token=token), get("/edit", token=token),
                     post_multipart("/edit", [(CSRF_FIELD, csrf), ("nickname", "late")], token=token)):
            with self.subTest(resp=resp):
                self.assertEqual(resp.status, 303, resp)
                self.assertEqual(resp.headers.get("Location"), "/?session=expired")
                self.assertEqual(resp.cookie().value, "", resp)
        page = get("/?session=expired").text
        self.assertIn("Please log in again.", page)
        self.assertIn('name="password"', page)

    def test_plain_login_page_says_nothing_about_expiry(self):
        self.assertNotIn("expired", get("/").text)


if __name__ == "__main__":
    unittest.main()
