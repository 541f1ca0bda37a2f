"""The browser flow (HTML pages) against the running stack: login form,
303 redirects, profile page, edit form (multipart), logout, and HTML
escaping of user-controlled text (issue 2, "Interfaces": HTML pages)."""

import html
import re
import unittest

import helpers
from helpers import get, login_token, post_form, post_multipart, request

USER_MAIN = "user201"
USER_LOGOUT = "user202"
USER_XSS = "user203"

ERROR_WORDS = re.compile(r"invalid|incorrect|wrong|failed|unknown|not match|must|too long|empty|between|"
                         r"characters|required|control", re.IGNORECASE)


def setUpModule():
    helpers.require_stack()


def form_login(username, password=helpers.PASSWORD):
    return helpers.post_login_form(username, password)


def edit(token, parts):
    """POST /edit (multipart parts) with the form's CSRF token, as the page does."""
    return post_multipart("/edit", [(helpers.CSRF_FIELD, helpers.session_csrf(token))] + parts, token=token)


def logout(token):
    """POST /logout with the profile page's CSRF token, as the page does."""
    return post_form("/logout", {helpers.CSRF_FIELD: helpers.session_csrf(token, "/profile")}, token=token)


def html_login_token(testcase, username):
    resp = form_login(username)
    testcase.assertEqual(resp.status, 303, resp)
    cookie = resp.cookie()
    testcase.assertIsNotNone(cookie, resp)
    return cookie.value


class HtmlTestCase(helpers.StackTestCase):

    def assert_html(self, resp, status=200):
        self.assertEqual(resp.status, status, resp)
        self.assertEqual(resp.content_type, "text/html", resp)
        self.assertIn("charset=utf-8", (resp.headers.get("Content-Type") or "").lower().replace(" ", ""), resp)
        return resp.text

    def assert_redirect(self, resp, path):
        self.assertEqual(resp.status, 303, resp)
        self.assertEqual(resp.location_path, path, resp.headers.get("Location"))

    def assert_has_form_field(self, page, name):
        self.assertRegex(page, r"""<(input|textarea)[^>]*\bname=["']?%s\b""" % re.escape(name), page)


class LoginPageTest(HtmlTestCase):

    def test_login_page_shows_form(self):
        page = self.assert_html(get("/"))
        self.assertRegex(page, r"""<form[^>]*action=["']?/login""", page)
        self.assertRegex(page, r"""<form[^>]*method=["']?post""", page)
        self.assert_has_form_field(page, "username")
        self.assert_has_form_field(page, "password")
        self.assertRegex(page, r"""type=["']?password""", page)

    def test_form_login_redirects_to_profile_with_session_cookie(self):
        resp = form_login(USER_MAIN)
        self.assert_redirect(resp, "/profile")
        cookie = resp.cookie()
        self.assertIsNotNone(cookie, resp.headers.get_all("Set-Cookie"))
        self.assertEqual(cookie.value.count("."), 2, cookie)
        self.assertIs(cookie.attrs.get("httponly"), True, cookie)
        self.assertEqual(str(cookie.attrs.get("samesite", "")).lower(), "lax", cookie)
        self.assertEqual(cookie.attrs.get("path"), "/", cookie)
        self.assertEqual(cookie.max_age(), helpers.TOKEN_TTL_S, cookie)
        # The cookie from the HTML login is a working API session too.
        helpers.assert_profile_object(self, helpers.get_profile(cookie.value), USER_MAIN)

    def test_wrong_password_shows_login_page_with_error_and_401(self):
        resp = form_login(USER_MAIN, "wrong-password")
        page = self.assert_html(resp, 401)
        self.assertIsNone(resp.cookie(), resp)
        self.assert_has_form_field(page, "password")
        api_message = helpers.post_json("/api/v1/login", {"username": USER_MAIN, "password": "x"}).json()["error"]["message"]
        self.assertTrue(html.escape(api_message) in page or ERROR_WORDS.search(_visible_text(page)),
                        "no error message on the page: %s" % page)

    def test_unknown_user_shows_the_same_error_as_wrong_password(self):
        wrong = form_login(USER_MAIN, "wrong-password")
        unknown = form_login("nosuchuser" + helpers.unique_suffix(), "wrong-password")
        self.assertEqual(unknown.status, 401, unknown)
        # Same page apart from the name and the form's CSRF token (each GET / is a new pre-session).
        strip = lambda text: re.sub(r'(user201|nosuchuser[0-9a-f]+|name="csrf" value="[^"]*")', "NAME", text)
        self.assertEqual(strip(unknown.text), strip(wrong.text))

    def test_login_page_escapes_the_submitted_username(self):
        probe = '<script>alert("u")</script>'
        resp = form_login(probe, "x")
        self.assertIn(resp.status, (400, 401), resp)
        self.assertNotIn(probe, resp.text)

    def test_login_page_redirects_to_profile_when_logged_in(self):
        token = html_login_token(self, USER_MAIN)
        self.assert_redirect(get("/", token=token), "/profile")

    def test_login_page_with_dead_cookie_shows_form(self):
        page = self.assert_html(get("/", token="not.a.token"))
        self.assert_has_form_field(page, "username")


class ProfilePageTest(HtmlTestCase):

    def test_profile_without_cookie_redirects_to_login(self):
        self.assert_redirect(get("/profile"), "/")

    def test_profile_with_invalid_cookie_redirects_to_login(self):
        self.assert_redirect(get("/profile", token="garbage"), "/")

    def test_profile_shows_username_and_nickname(self):
        token = html_login_token(self, USER_MAIN)
        nickname = "Zoë 🚀 李 " + helpers.unique_suffix()
        self.assertEqual(helpers.patch_nickname(token, nickname).status, 200)
        page = self.assert_html(get("/profile", token=token))
        self.assertIn(USER_MAIN, page)
        self.assertIn(html.escape(nickname), page)

    def test_profile_links_to_edit_and_logout(self):
        token = html_login_token(self, USER_MAIN)
        page = self.assert_html(get("/profile", token=token))
        self.assertRegex(page, r"""href=["']?/edit""", page)
        self.assertRegex(page, r"""<form[^>]*action=["']?/logout""", page)


class EditTest(HtmlTestCase):

    def test_edit_page_shows_multipart_form(self):
        token = html_login_token(self, USER_MAIN)
        page = self.assert_html(get("/edit", token=token))
        self.assertRegex(page, r"""<form[^>]*action=["']?/edit""", page)
        self.assertRegex(page, r"""enctype=["']?multipart/form-data""", page)
        self.assert_has_form_field(page, "nickname")
        self.assert_has_form_field(page, "picture")

    def test_edit_page_without_cookie_redirects_to_login(self):
        self.assert_redirect(get("/edit"), "/")

    def test_edit_nickname_redirects_and_profile_shows_it(self):
        token = html_login_token(self, USER_MAIN)
        nickname = "Edited 李 🚀 " + helpers.unique_suffix()
        resp = edit(token, [("nickname", nickname)])
        self.assert_redirect(resp, "/profile")
        page = self.assert_html(get("/profile", token=token))
        self.assertIn(html.escape(nickname), page)
        self.assertEqual(helpers.get_profile(token).json()["nickname"], nickname)

    def test_edit_with_empty_picture_field_keeps_picture(self):
        # Browsers send an empty file part when no file is chosen.
        token = html_login_token(self, USER_MAIN)
        before = helpers.get_profile(token).json()
        nickname = "no file " + helpers.unique_suffix()
        resp = edit(token, [("nickname", nickname), ("picture", "", "application/octet-stream", b"")])
        self.assert_redirect(resp, "/profile")
        after = helpers.get_profile(token).json()
        self.assertEqual(after["nickname"], nickname)
        self.assertEqual(after["picture_url"], before["picture_url"])

    def test_edit_invalid_nickname_shows_form_with_error(self):
        token = html_login_token(self, USER_MAIN)
        before = helpers.get_profile(token).json()
        for nickname in ("x" * 65, "   ", "bad\u0001char"):
            with self.subTest(nickname=nickname[:10]):
                resp = edit(token, [("nickname", nickname)])
                self.assertTrue(400 <= resp.status < 500, resp)
                self.assertEqual(resp.content_type, "text/html", resp)
                page = resp.text
                self.assertRegex(page, r"""<form[^>]*action=["']?/edit""", page)
                api_message = helpers.patch_nickname(token, nickname).json()["error"]["message"]
                self.assertTrue(html.escape(api_message) in page or ERROR_WORDS.search(_visible_text(page)),
                                "no error message on the page: %s" % page)
        self.assertEqual(helpers.get_profile(token).json(), before)

    def test_edit_without_session_changes_nothing(self):
        token = html_login_token(self, USER_MAIN)
        before = helpers.get_profile(token).json()
        resp = post_multipart("/edit", [("nickname", "anonymous " + helpers.unique_suffix())])
        self.assertTrue(resp.status in (401, 403) or (resp.status == 303 and resp.location_path == "/"), resp)
        self.assertEqual(helpers.get_profile(token).json(), before)

    def test_script_nickname_is_escaped_on_profile_page(self):
        token = html_login_token(self, USER_XSS)
        nickname = "<script>alert(1)</script>"
        self.assert_redirect(edit(token, [("nickname", nickname)]), "/profile")
        for path in ("/profile", "/edit"):
            with self.subTest(page=path):
                page = self.assert_html(get(path, token=token))
                self.assertNotIn(nickname, page)
                self.assertNotIn("<script>alert", page)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", self.assert_html(get("/profile", token=token)))
        # The JSON API returns it unchanged: escaping is the page's job.
        self.assertEqual(helpers.get_profile(token).json()["nickname"], nickname)

    def test_quotes_in_nickname_cannot_break_out_of_attributes(self):
        token = html_login_token(self, USER_XSS)
        nickname = 'x" onmouseover="alert(1)'
        self.assertEqual(helpers.patch_nickname(token, nickname).status, 200)
        for path in ("/profile", "/edit"):
            with self.subTest(page=path):
                page = self.assert_html(get(path, token=token))
                self.assertNotIn('" onmouseover="', page)

    def test_ampersand_in_nickname_is_escaped(self):
        token = html_login_token(self, USER_XSS)
        nickname = "Tom & Jerry &amp; <b>bold</b>"
        self.assertEqual(helpers.patch_nickname(token, nickname).status, 200)
        page = self.assert_html(get("/profile", token=token))
        self.assertIn("Tom &amp; Jerry &amp;amp; &lt;b&gt;bold&lt;/b&gt;", page)
        self.assertNotIn("<b>bold</b>", page)


class LogoutTest(HtmlTestCase):

    def test_logout_redirects_and_clears_cookie(self):
        token = html_login_token(self, USER_LOGOUT)
        resp = logout(token)
        self.assert_redirect(resp, "/")
        cookie = resp.cookie()
        self.assertIsNotNone(cookie, "logout did not clear the cookie: %r" % resp.headers.get_all("Set-Cookie"))
        self.assertEqual(cookie.value, "", cookie)
        self.assertEqual(cookie.max_age(), 0, cookie)
        self.assertEqual(cookie.attrs.get("path"), "/", cookie)

    def test_old_cookie_no_longer_works_after_logout(self):
        token = html_login_token(self, USER_LOGOUT)
        self.assertEqual(get("/profile", token=token).status, 200)
        self.assertEqual(logout(token).status, 303)
        self.assert_redirect(get("/profile", token=token), "/")
        helpers.assert_json_error(self, helpers.get_profile(token), 401)

    def test_logout_page_via_get_does_not_log_out(self):
        # Logout changes state, so it is POST only; a GET (e.g. an <img src>
        # on another site) must not end the session.
        token = html_login_token(self, USER_LOGOUT)
        request("GET", "/logout", token=token)
        helpers.assert_profile_object(self, helpers.get_profile(token), USER_LOGOUT)


def _visible_text(page):
    """The page without tags, attribute values and <script>/<style> bodies."""
    page = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", page)
    return html.unescape(re.sub(r"(?s)<[^>]*>", " ", page))


if __name__ == "__main__":
    unittest.main()
