"""Profile pictures against the running stack: upload (JSON PUT and HTML
multipart), decoding-based format check, re-encoding (metadata stripped,
resized), serving, replacement deleting the old file, and the 413/415
refusals (issue 2, "Picture")."""

import html
import os
import re
import unittest
import urllib.parse

import helpers
import images
from helpers import assert_json_error, assert_profile_object, get_profile, login_token, request

ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")
MAX_BYTES = int(helpers.config_value("picture", "max_bytes", str(10 * 1024 * 1024)))
MAX_SIDE_PX = int(helpers.config_value("picture", "max_side_px", "256"))


def setUpModule():
    helpers.require_stack()


def upload(token, data, content_type):
    return request("PUT", "/api/v1/profile/picture", body=data, headers={"Content-Type": content_type},
                   token=token, timeout=60)


def url_path(url):
    """The request target of a picture URL (absolute or a path)."""
    parts = urllib.parse.urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def picture_files():
    """Relative paths of every file under the pictures directory."""
    root = helpers.pictures_dir()
    found = set()
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def stream_upload(token, total, chunked=False):
    """PUTs `total` bytes (a PNG signature, then zeros) as a picture.
    Returns (status, body, bytes sent); see helpers.request_large."""
    resp, sent = helpers.request_large("PUT", "/api/v1/profile/picture", total, head=b"\x89PNG\r\n\x1a\n",
                                       headers={"Content-Type": "image/png"}, token=token, chunked=chunked)
    return resp.status, resp.body, sent


class PictureTestCase(helpers.StackTestCase):

    def fetch(self, url, token=None):
        return request("GET", url_path(url), token=token)

    def assert_served_picture(self, url, uploaded):
        """url serves a re-encoded accepted image with cache headers; returns
        (mime, width, height, bytes)."""
        resp = self.fetch(url)
        self.assertEqual(resp.status, 200, resp)
        self.assertIn(resp.content_type, ACCEPTED_TYPES, resp)
        mime, width, height = images.sniff(resp.body)
        self.assertEqual(mime, resp.content_type, "bytes do not match Content-Type: %r" % resp.body[:16])
        self.assertTrue(resp.headers.get("Cache-Control"), "no Cache-Control header: %s" % dict(resp.headers))
        self.assertNotEqual(resp.body, uploaded, "served bytes are the upload, not a re-encoding")
        self.assertEqual(int(resp.headers.get("Content-Length", len(resp.body))), len(resp.body))
        return mime, width, height, resp.body

    def upload_ok(self, token, username, data, content_type):
        resp = upload(token, data, content_type)
        body = assert_profile_object(self, resp, username)
        self.assertIsInstance(body["picture_url"], str, "picture_url is null after upload: %r" % resp)
        self.assertTrue(body["picture_url"], resp)
        return body


class UploadTest(PictureTestCase):

    def test_png_upload_is_accepted_and_served(self):
        token = login_token(self, "user301")
        data = images.png(64, 48)
        body = self.upload_ok(token, "user301", data, "image/png")
        self.assertEqual(get_profile(token).json()["picture_url"], body["picture_url"])
        self.assert_served_picture(body["picture_url"], data)

    def test_jpeg_upload_is_accepted_and_served(self):
        token = login_token(self, "user301")
        data = images.jpeg()
        body = self.upload_ok(token, "user301", data, "image/jpeg")
        self.assertEqual(get_profile(token).json()["picture_url"], body["picture_url"])
        self.assert_served_picture(body["picture_url"], data)

    def test_gif_upload_is_accepted_and_served(self):
        token = login_token(self, "user310")
        data = images.gif()
        body = self.upload_ok(token, "user310", data, "image/gif")
        self.assert_served_picture(body["picture_url"], data)

    def test_webp_upload_is_accepted_and_served(self):
        token = login_token(self, "user310")
        data = images.webp()
        body = self.upload_ok(token, "user310", data, "image/webp")
        self.assert_served_picture(body["picture_url"], data)

    def test_picture_url_is_served_without_a_session(self):
        token = login_token(self, "user301")
        body = self.upload_ok(token, "user301", images.png(40, 30), "image/png")
        resp = self.fetch(body["picture_url"])
        self.assertEqual(resp.status, 200, resp)

    def test_large_picture_is_resized_to_fit_avatar_bounds(self):
        token = login_token(self, "user309")
        data = images.png(600, 400)
        body = self.upload_ok(token, "user309", data, "image/png")
        _, width, height, _ = self.assert_served_picture(body["picture_url"], data)
        self.assertIsNotNone(width, "cannot read the served picture's size")
        self.assertLessEqual(max(width, height), MAX_SIDE_PX, (width, height))
        self.assertGreater(min(width, height), 0)

    def test_exif_gps_metadata_is_stripped(self):
        token = login_token(self, "user308")
        data = images.jpeg_with_exif_gps()
        self.assertIn(b"Exif", data)
        body = self.upload_ok(token, "user308", data, "image/jpeg")
        _, _, _, served = self.assert_served_picture(body["picture_url"], data)
        # The encoder may write a fresh EXIF block of its own (libvips adds
        # resolution and colour-space tags to WebP), so look for what came
        # from the upload: the camera make, the GPS IFD pointer (tag 0x8825,
        # either byte order) and the GPS coordinates.
        self.assertNotIn(images.EXIF_SECRET, served)
        for needle in images.EXIF_GPS_NEEDLES:
            self.assertNotIn(needle, served, "GPS data survived re-encoding")


class ReplaceTest(PictureTestCase):

    def test_new_upload_replaces_and_deletes_the_old_picture(self):
        token = login_token(self, "user302")
        first = self.upload_ok(token, "user302", images.png(50, 50), "image/png")["picture_url"]
        self.assertEqual(self.fetch(first).status, 200)
        files_before = picture_files()
        old_name = os.path.basename(urllib.parse.urlsplit(first).path)
        old_on_disk = [f for f in files_before if os.path.basename(f) == old_name]

        second = self.upload_ok(token, "user302", images.jpeg(), "image/jpeg")["picture_url"]
        self.assertNotEqual(second, first)
        self.assertEqual(self.fetch(second).status, 200)
        self.assertEqual(self.fetch(first).status, 404, "the replaced picture is still served")
        files_after = picture_files()
        self.assertEqual(len(files_after), len(files_before),
                         "pictures on disk: %d before, %d after replacing one (new: %s, gone: %s)"
                         % (len(files_before), len(files_after), sorted(files_after - files_before),
                            sorted(files_before - files_after)))
        if old_on_disk:
            self.assertFalse([f for f in files_after if os.path.basename(f) == old_name],
                             "the replaced file %s is still on disk" % old_on_disk)

    def test_repeated_uploads_do_not_grow_the_disk(self):
        token = login_token(self, "user302")
        self.upload_ok(token, "user302", images.png(20, 20), "image/png")
        files_before = picture_files()
        for i in range(5):
            self.upload_ok(token, "user302", images.png(21 + i, 20), "image/png")
        self.assertEqual(len(picture_files()), len(files_before))

    def test_uploading_the_same_picture_twice_keeps_it_served(self):
        # A content-derived name repeats: deleting "the old file" must not
        # delete the file just written under the same name.
        token = login_token(self, "user305")
        data = images.png(33, 33)
        first = self.upload_ok(token, "user305", data, "image/png")["picture_url"]
        second = self.upload_ok(token, "user305", data, "image/png")["picture_url"]
        self.assertEqual(get_profile(token).json()["picture_url"], second)
        self.assertEqual(self.fetch(second).status, 200, "picture gone after re-uploading it (%s, %s)"
                         % (first, second))

    def test_replacing_a_picture_keeps_another_users_identical_picture(self):
        # Two users upload the same image; when one replaces it, the other
        # user's picture must still be served.
        data = images.png(31, 29)
        token_a = login_token(self, "user303")
        token_b = login_token(self, "user304")
        url_a = self.upload_ok(token_a, "user303", data, "image/png")["picture_url"]
        url_b = self.upload_ok(token_b, "user304", data, "image/png")["picture_url"]
        self.upload_ok(token_a, "user303", images.jpeg(), "image/jpeg")
        self.assertEqual(get_profile(token_b).json()["picture_url"], url_b)
        self.assertEqual(self.fetch(url_b).status, 200,
                         "user304's picture disappeared when user303 replaced the same image (%s, %s)"
                         % (url_a, url_b))


class RefusedUploadTest(PictureTestCase):

    def setUp(self):
        self.token = login_token(self, "user307")
        self.before = get_profile(self.token).json()

    def assert_unchanged(self):
        self.assertEqual(get_profile(self.token).json(), self.before)

    def test_text_file_sent_as_png_is_415(self):
        files_before = picture_files()
        assert_json_error(self, upload(self.token, images.TEXT, "image/png"), 415)
        self.assert_unchanged()
        self.assertEqual(picture_files(), files_before, "a refused upload left a file behind")

    def test_other_formats_are_415(self):
        cases = {
            "tiff as image/tiff": (images.tiff(), "image/tiff"),
            "tiff as image/png": (images.tiff(), "image/png"),
            "svg as image/svg+xml": (images.SVG, "image/svg+xml"),
            "svg as image/png": (images.SVG, "image/png"),
            "html as image/gif": (b"<html><body>hi</body></html>", "image/gif"),
            "pdf as image/jpeg": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "image/jpeg"),
        }
        for name, (data, ctype) in cases.items():
            with self.subTest(case=name):
                assert_json_error(self, upload(self.token, data, ctype), 415)
        self.assert_unchanged()

    def test_truncated_image_is_415(self):
        cases = {
            "png cut after IHDR": images.png(64, 48)[:40],
            "png cut inside IDAT": images.png(64, 48)[:200],
            "jpeg cut inside scan": images.jpeg()[:300],
            "png signature only": b"\x89PNG\r\n\x1a\n",
        }
        for name, data in cases.items():
            with self.subTest(case=name):
                ctype = "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png"
                assert_json_error(self, upload(self.token, data, ctype), 415)
        self.assert_unchanged()

    def test_empty_body_is_refused(self):
        resp = upload(self.token, b"", "image/png")
        self.assertIn(resp.status, (400, 415), resp)
        assert_json_error(self, resp, resp.status)
        self.assert_unchanged()

    def test_11_mib_upload_is_413(self):
        status, body, sent = stream_upload(self.token, 11 * 1024 * 1024)
        self.assertEqual(status, 413, "status %d after sending %d bytes: %r" % (status, sent, body[:300]))
        self.assert_unchanged()

    def test_just_over_the_limit_is_413(self):
        status, body, sent = stream_upload(self.token, MAX_BYTES + 1)
        self.assertEqual(status, 413, "status %d after sending %d bytes: %r" % (status, sent, body[:300]))
        self.assert_unchanged()

    def test_chunked_upload_over_the_limit_is_refused(self):
        # No Content-Length: the server must count while reading, not buffer
        # everything first. 411 (length required) is an acceptable refusal.
        status, body, sent = stream_upload(self.token, 11 * 1024 * 1024, chunked=True)
        self.assertIn(status, (411, 413), "status %d after sending %d bytes: %r" % (status, sent, body[:300]))
        self.assert_unchanged()

    def test_server_keeps_serving_after_a_413(self):
        stream_upload(self.token, 11 * 1024 * 1024)
        assert_profile_object(self, get_profile(self.token), "user307")
        body = self.upload_ok(self.token, "user307", images.png(12, 12), "image/png")
        self.assertEqual(self.fetch(body["picture_url"]).status, 200)
        self.before = get_profile(self.token).json()


class ServingTest(PictureTestCase):

    def test_unknown_picture_is_404(self):
        prefix = helpers.config_value("picture", "url_prefix", "/pictures/")
        self.assertEqual(self.fetch(prefix + "0" * 64 + ".webp").status, 404)

    def test_path_traversal_is_refused(self):
        prefix = helpers.config_value("picture", "url_prefix", "/pictures/")
        for target in ("../etc/passwd", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/etc/passwd",
                       "../../../etc/" + os.path.basename(helpers.CONFIG_PATH), "....//....//etc/passwd"):
            with self.subTest(target=target):
                resp = request("GET", prefix + target)
                self.assertIn(resp.status, (400, 403, 404), resp)
                self.assertNotIn(b"root:", resp.body)
                self.assertNotIn(b"[web]", resp.body)


class HtmlUploadTest(PictureTestCase):

    def test_edit_form_with_picture_redirects_and_profile_shows_img(self):
        token = login_token(self, "user306")
        nickname = "with picture " + helpers.unique_suffix()
        data = images.png(80, 60)
        resp = helpers.post_multipart("/edit", [("csrf", helpers.session_csrf(token)), ("nickname", nickname),
                                                ("picture", "photo.png", "image/png", data)], token=token)
        self.assertEqual(resp.status, 303, resp)
        self.assertEqual(resp.location_path, "/profile", resp.headers.get("Location"))
        profile = get_profile(token).json()
        self.assertEqual(profile["nickname"], nickname)
        self.assertTrue(profile["picture_url"], profile)
        page = request("GET", "/profile", token=token)
        self.assertEqual(page.status, 200, page)
        src = html.escape(profile["picture_url"])
        self.assertRegex(page.text, r"""<img[^>]*src=["']?%s""" % re.escape(src), page.text)
        self.assert_served_picture(profile["picture_url"], data)

    def test_edit_form_with_11_mib_picture_is_413(self):
        token = login_token(self, "user306")
        before = get_profile(token).json()
        body, content_type = helpers.encode_multipart([
            ("csrf", helpers.session_csrf(token)),
            ("nickname", "too big " + helpers.unique_suffix()),
            ("picture", "big.png", "image/png", images.png(8, 8) + bytes(11 * 1024 * 1024))])
        resp, sent = helpers.request_large("POST", "/edit", body, headers={"Content-Type": content_type}, token=token)
        self.assertEqual(resp.status, 413, "status %d after %d bytes: %r" % (resp.status, sent, resp))
        self.assertEqual(resp.content_type, "text/html", resp)
        self.assertEqual(get_profile(token).json()["picture_url"], before["picture_url"])

    def test_edit_form_with_text_file_as_picture_is_refused(self):
        token = login_token(self, "user306")
        before = get_profile(token).json()
        resp = helpers.post_multipart("/edit", [("csrf", helpers.session_csrf(token)),
                                                ("nickname", "should not stick " + helpers.unique_suffix()),
                                                ("picture", "notes.png", "image/png", images.TEXT)], token=token)
        self.assertTrue(400 <= resp.status < 500, resp)
        self.assertEqual(resp.content_type, "text/html", resp)
        self.assertRegex(resp.text, r"""<form[^>]*action=["']?/edit""", resp.text)
        self.assertEqual(get_profile(token).json()["picture_url"], before["picture_url"])


if __name__ == "__main__":
    unittest.main()
