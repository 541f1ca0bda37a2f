"""Shared plumbing for the integration tests (standard library only).

The stack (web + core + MariaDB + Redis, users user1..user20000 with the
password password123) is started before the tests by scripts/stack.sh.
Environment:
  PROFILE_WEB_URL  base URL of the web server, e.g. http://127.0.0.1:28080
                   (default: built from [web] host/port of PROFILE_CONFIG)
  PROFILE_CONFIG   INI file of the running stack, relative to the repo root
                   (default etc/test.ini)
  PROFILE_STACK    the stack control script, relative to the repo root
                   (default scripts/stack.sh)

request() never raises on an HTTP error status and never follows redirects:
tests assert statuses, Location and Set-Cookie themselves.
"""

import base64
import configparser
import ctypes
import ctypes.util
import http.client
import json
import os
import re
import select
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse
import uuid

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CONFIG_PATH = os.path.join(REPO_ROOT, os.environ.get("PROFILE_CONFIG", "etc/test.ini"))
STACK_SCRIPT = os.path.join(REPO_ROOT, os.environ.get("PROFILE_STACK", "scripts/stack.sh"))
PASSWORD = "password123"
SESSION_COOKIE = "session"
CSRF_FIELD = "csrf"          # hidden field of every HTML form (src/web/csrf.h)
CSRF_COOKIE = "login_csrf"   # pre-session cookie the login form's token is bound to


# --- configuration of the running stack ------------------------------------

def _read_config():
    parser = configparser.ConfigParser(interpolation=None, strict=False,
                                       inline_comment_prefixes=(";",))
    try:
        parser.read(CONFIG_PATH, encoding="utf-8")
    except configparser.Error:
        pass
    return parser


_CONFIG = _read_config()


def config_value(section, key, default):
    """A key of the stack's config: PROFILE_<SECTION>_<KEY> from the
    environment wins over the INI file, which wins over default (the
    documented built-in default)."""
    env = os.environ.get("PROFILE_%s_%s" % (section.upper(), key.upper()))
    if env is not None:
        return env
    if _CONFIG.has_option(section, key):
        return _CONFIG.get(section, key).strip().strip('"')
    return default


def _base_url():
    url = os.environ.get("PROFILE_WEB_URL")
    if url:
        return url.rstrip("/")
    host = config_value("web", "host", "127.0.0.1")
    port = config_value("web", "port", "8080")
    return "http://%s:%s" % (host, port)


BASE_URL = _base_url()
_PARSED = urllib.parse.urlsplit(BASE_URL)
HOST = _PARSED.hostname or "127.0.0.1"
PORT = _PARSED.port or 80
TOKEN_TTL_S = int(config_value("core", "token_ttl_s", "3600"))
COOKIE_SECURE = config_value("web", "cookie_secure", "0") in ("1", "true", "yes", "on")


def pictures_dir():
    """Absolute path of [picture] dir (relative paths are from the repo root)."""
    path = config_value("picture", "dir", "var/data/pictures")
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


# --- HTTP -------------------------------------------------------------------

class Response:
    """One HTTP answer: status (int), headers (http.client.HTTPMessage, so
    headers.get_all("Set-Cookie") lists every cookie), body (bytes) and
    elapsed (seconds from sending to the last body byte)."""

    def __init__(self, status, reason, headers, body, elapsed):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace")

    @property
    def content_type(self):
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def location_path(self):
        """Path of the Location header (absolute or relative URL), or None."""
        location = self.headers.get("Location")
        if location is None:
            return None
        return urllib.parse.urlsplit(location).path

    def cookies(self):
        """Every Set-Cookie of the answer, parsed (see parse_set_cookie)."""
        return [parse_set_cookie(value) for value in (self.headers.get_all("Set-Cookie") or [])]

    def cookie(self, name=SESSION_COOKIE):
        """The Set-Cookie for name, parsed, or None when absent."""
        found = [c for c in self.cookies() if c.name == name]
        return found[-1] if found else None

    def __repr__(self):
        return "<Response %d %s %r>" % (self.status, self.headers.get("Content-Type"), self.body[:300])


def request(method, path, body=None, headers=None, token=None, timeout=30.0, cookies=None):
    """Sends one request on a fresh connection and returns a Response, for
    any status. body: bytes, str (UTF-8) or a dict/list (sent as JSON with
    Content-Type application/json unless headers name another type).
    token: session JWT sent as the session cookie; cookies: a dict of more
    cookies to send. Raises only on network errors (connection refused,
    timeout)."""
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode("utf-8")
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode("utf-8")
    jar = dict(cookies or {})
    if token is not None:
        jar[SESSION_COOKIE] = token
    if jar:
        hdrs["Cookie"] = "; ".join("%s=%s" % item for item in jar.items())
    conn = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    start = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.reason, resp.headers, data, time.monotonic() - start)
    finally:
        conn.close()


def request_large(method, path, body, headers=None, token=None, chunked=False, chunk_size=64 * 1024,
                  timeout=60.0, head=b""):
    """Sends a large body in chunks, stopping as soon as the server answers
    early (a server may refuse an oversized body with 413 right after the
    headers and then close, so a broken pipe while sending is expected).
    body: bytes, or an int N for N bytes (head, then zeros) generated on
    the fly so the test does not hold them. chunked: use Transfer-Encoding:
    chunked instead of Content-Length. Returns (Response, bytes sent);
    raises AssertionError when no response could be read at all."""
    total = body if isinstance(body, int) else len(body)
    conn = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    conn.putrequest(method, path)
    for key, value in (headers or {}).items():
        conn.putheader(key, value)
    if token is not None:
        conn.putheader("Cookie", "%s=%s" % (SESSION_COOKIE, token))
    if chunked:
        conn.putheader("Transfer-Encoding", "chunked")
    else:
        conn.putheader("Content-Length", str(total))
    start = time.monotonic()
    conn.endheaders()
    sent = 0
    padding = bytes(chunk_size)
    send_error = None
    try:
        while sent < total:
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if readable:  # the server answered before the end of the body
                break
            n = min(chunk_size, total - sent)
            if isinstance(body, int):
                data = (head[sent:sent + n] + padding)[:n] if sent < len(head) else padding[:n]
            else:
                data = body[sent:sent + n]
            conn.sock.sendall(b"%x\r\n%s\r\n" % (n, data) if chunked else data)
            sent += n
        else:
            if chunked:
                conn.sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError) as exc:
        send_error = exc
    try:
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.reason, resp.headers, data, time.monotonic() - start), sent
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError) as exc:
        raise AssertionError("no HTTP response after sending %d of %d bytes (send error %r, read error %r)"
                             % (sent, total, send_error, exc))
    finally:
        conn.close()


def get(path, **kw):
    return request("GET", path, **kw)


def post_json(path, obj, **kw):
    return request("POST", path, body=obj, **kw)


def post_form(path, fields, **kw):
    """POST an application/x-www-form-urlencoded form (fields: dict or pairs)."""
    body = urllib.parse.urlencode(fields).encode("ascii")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    headers.update(kw.pop("headers", {}) or {})
    return request("POST", path, body=body, headers=headers, **kw)


def post_multipart(path, parts, **kw):
    body, content_type = encode_multipart(parts)
    headers = {"Content-Type": content_type}
    headers.update(kw.pop("headers", {}) or {})
    return request("POST", path, body=body, headers=headers, **kw)


def encode_multipart(parts):
    """Encodes multipart/form-data (RFC 7578). parts: list of
    (name, value) for text fields (str, sent as UTF-8) and
    (name, filename, content_type, data bytes) for files.
    Returns (body bytes, Content-Type header value)."""
    boundary = "----profiletest" + uuid.uuid4().hex
    out = bytearray()
    for part in parts:
        out += b"--" + boundary.encode("ascii") + b"\r\n"
        if len(part) == 2:
            name, value = part
            out += ('Content-Disposition: form-data; name="%s"\r\n\r\n' % name).encode("utf-8")
            out += value.encode("utf-8") if isinstance(value, str) else value
        else:
            name, filename, ctype, data = part
            out += ('Content-Disposition: form-data; name="%s"; filename="%s"\r\n' % (name, filename)).encode("utf-8")
            out += ("Content-Type: %s\r\n\r\n" % ctype).encode("ascii")
            out += data
        out += b"\r\n"
    out += b"--" + boundary.encode("ascii") + b"--\r\n"
    return bytes(out), "multipart/form-data; boundary=" + boundary


# --- CSRF tokens of the HTML forms ---------------------------------------------

_CSRF_INPUT = re.compile(r'<input[^>]*\bname="%s"[^>]*\bvalue="([^"]*)"' % CSRF_FIELD)


def form_csrf(page):
    """The value of the CSRF hidden field in an HTML page, or None."""
    found = _CSRF_INPUT.search(page)
    return found.group(1) if found else None


def login_form():
    """GET / as a browser without a session: returns (the pre-session
    cookie's value or None, the login form's CSRF token or None)."""
    resp = get("/")
    cookie = resp.cookie(CSRF_COOKIE)
    return (cookie.value if cookie is not None else None), form_csrf(resp.text)


def post_login_form(username, password=PASSWORD, **kw):
    """POST /login the way a browser does: first GET / for the form's CSRF
    token and pre-session cookie, then post the form with both."""
    pre, csrf = login_form()
    cookies = dict(kw.pop("cookies", {}) or {})
    if pre is not None:
        cookies[CSRF_COOKIE] = pre
    fields = {"username": username, "password": password, CSRF_FIELD: csrf or ""}
    return post_form("/login", fields, cookies=cookies, **kw)


def session_csrf(token, path="/edit"):
    """The CSRF token of the forms a logged-in user gets (read from path)."""
    return form_csrf(get(path, token=token).text)


# --- cookies and tokens -----------------------------------------------------

class SetCookie:
    """A parsed Set-Cookie header (RFC 6265 section 5.2): name, value, and
    attrs, a dict keyed by lower-case attribute name (flags map to True),
    plus raw, the header as received."""

    def __init__(self, name, value, attrs, raw):
        self.name = name
        self.value = value
        self.attrs = attrs
        self.raw = raw

    def max_age(self):
        value = self.attrs.get("max-age")
        return None if value is None or value is True else int(value)

    def __repr__(self):
        return "<SetCookie %r>" % self.raw


def parse_set_cookie(header):
    """Parses one Set-Cookie header value into a SetCookie."""
    pieces = header.split(";")
    name, _, value = pieces[0].partition("=")
    attrs = {}
    for piece in pieces[1:]:
        key, sep, val = piece.strip().partition("=")
        if not key:
            continue
        attrs[key.strip().lower()] = val.strip() if sep else True
    return SetCookie(name.strip(), value.strip(), attrs, header)


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt_parts(token):
    """(header dict, payload dict, signature bytes) of a JWT, unverified."""
    header, payload, signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), b64url_decode(signature)


# --- login and profile ------------------------------------------------------

def login(username, password=PASSWORD, **kw):
    """POST /api/v1/login; returns (Response, token or None)."""
    resp = post_json("/api/v1/login", {"username": username, "password": password}, **kw)
    cookie = resp.cookie()
    token = cookie.value if (cookie is not None and resp.status == 200) else None
    return resp, token


def login_token(testcase, username, password=PASSWORD):
    """Logs in and returns the session token, failing testcase when it cannot."""
    resp, token = login(username, password)
    testcase.assertEqual(resp.status, 200, "login of %s failed: %r" % (username, resp))
    testcase.assertTrue(token, "login of %s set no session cookie: %r" % (username, resp))
    return token


def get_profile(token, **kw):
    return get("/api/v1/profile", token=token, **kw)


def patch_nickname(token, nickname):
    return request("PATCH", "/api/v1/profile", body={"nickname": nickname}, token=token)


def unique_suffix():
    return uuid.uuid4().hex[:8]


# --- assertions -------------------------------------------------------------

_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def assert_json_error(testcase, resp, status):
    """resp has the given status, Content-Type application/json and a body
    {"error": {"code": "snake_case", "message": "non-empty sentence"}}.
    Returns the error object."""
    testcase.assertEqual(resp.status, status, "expected %d, got %r" % (status, resp))
    testcase.assertEqual(resp.content_type, "application/json", "error is not JSON: %r" % resp)
    try:
        body = resp.json()
    except ValueError as exc:
        testcase.fail("error body is not valid JSON (%s): %r" % (exc, resp))
    testcase.assertIsInstance(body, dict, resp)
    testcase.assertIn("error", body, resp)
    error = body["error"]
    testcase.assertIsInstance(error, dict, resp)
    testcase.assertIsInstance(error.get("code"), str, resp)
    testcase.assertRegex(error["code"], _SNAKE, "error code is not snake_case: %r" % resp)
    testcase.assertIsInstance(error.get("message"), str, resp)
    testcase.assertTrue(error["message"].strip(), "empty error message: %r" % resp)
    return error


def assert_profile_object(testcase, resp, username):
    """resp is 200 JSON {"username", "nickname", "picture_url"} for username;
    returns the decoded object."""
    testcase.assertEqual(resp.status, 200, resp)
    testcase.assertEqual(resp.content_type, "application/json", resp)
    body = resp.json()
    testcase.assertEqual(body.get("username"), username, resp)
    testcase.assertIsInstance(body.get("nickname"), str, resp)
    testcase.assertIn("picture_url", body, resp)
    testcase.assertTrue(body["picture_url"] is None or isinstance(body["picture_url"], str), resp)
    return body


# --- the stack --------------------------------------------------------------

_REACHABLE = None
_REACHABLE_LOCK = threading.Lock()


def require_stack():
    """Call from setUpModule: raises a clear error (so every test of the
    module errors, none silently passes or is skipped) when the web server
    does not answer at BASE_URL."""
    global _REACHABLE
    with _REACHABLE_LOCK:
        if _REACHABLE is None:
            try:
                with socket.create_connection((HOST, PORT), timeout=3):
                    pass
                get("/", timeout=10)
                _REACHABLE = ""
            except OSError as exc:
                _REACHABLE = str(exc)
    if _REACHABLE:
        raise RuntimeError(
            "the profile web server is not reachable at %s (%s). Start the stack first: "
            "cd %s && scripts/stack.sh --config %s start (or set PROFILE_WEB_URL)."
            % (BASE_URL, _REACHABLE, REPO_ROOT, os.path.relpath(CONFIG_PATH, REPO_ROOT)))


def stack(command, timeout=180):
    """Runs `scripts/stack.sh --config <config> <command>` from the repo root
    (core-stop, core-start, mysql-stop, mysql-start; each blocks until done).
    Raises AssertionError with the script's output when it fails."""
    if not os.path.exists(STACK_SCRIPT):
        raise AssertionError("stack control script missing: %s" % STACK_SCRIPT)
    proc = subprocess.run([STACK_SCRIPT, "--config", CONFIG_PATH, command], cwd=REPO_ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError("%s %s failed (exit %d):\n%s" % (STACK_SCRIPT, command, proc.returncode,
                                                             proc.stdout.decode("utf-8", "replace")))
    return proc.stdout.decode("utf-8", "replace")


def _var_path(*parts):
    var = config_value("stack", "var_dir", "var")
    return os.path.join(var if os.path.isabs(var) else os.path.join(REPO_ROOT, var), *parts)


def sql(statement):
    """Runs one statement in the stack's private MariaDB as root (socket
    authentication, [stack] manage_mysql = 1) and returns its rows as lists
    of strings. For tests that must put the database in a state no API can
    (an old password hash)."""
    # utf8mb4: the client's default (utf8mb3) shows a 4-byte character as "?".
    proc = subprocess.run(["mariadb", "--default-character-set=utf8mb4", "-S", _var_path("run", "mysqld.sock"),
                           "-u", "root", "-N", "-B", config_value("mysql", "database", "profile"),
                           "-e", statement],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise AssertionError("mariadb failed (exit %d): %s" % (proc.returncode, out))
    return [line.split("\t") for line in out.splitlines()]


def redis(*args):
    """Runs one Redis command against [redis] and returns redis-cli's raw output."""
    proc = subprocess.run(["redis-cli", "--raw", "-h", config_value("redis", "host", "127.0.0.1"),
                           "-p", config_value("redis", "port", "16379")] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if proc.returncode != 0:
        raise AssertionError("redis-cli failed: %s" % proc.stdout.decode("utf-8", "replace"))
    return proc.stdout.decode("utf-8", "replace").rstrip("\n")


def argon2id_phc(password, opslimit, memlimit):
    """A PHC string of password from libsodium's crypto_pwhash_str with the
    given cost, as an older configuration would have stored it."""
    sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
    if sodium.sodium_init() < 0:
        raise AssertionError("sodium_init failed")
    out = ctypes.create_string_buffer(128)
    pw = password.encode("utf-8")
    sodium.crypto_pwhash_str.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong,
                                         ctypes.c_ulonglong, ctypes.c_size_t]
    if sodium.crypto_pwhash_str(out, pw, len(pw), opslimit, memlimit) != 0:
        raise AssertionError("crypto_pwhash_str failed")
    return out.value.decode("ascii")


def wait_for(predicate, timeout_s, interval_s=0.1):
    """Calls predicate() until it returns a true value or timeout_s passes;
    returns the last value. Exceptions count as false."""
    deadline = time.monotonic() + timeout_s
    value = None
    while True:
        try:
            value = predicate()
        except (OSError, http.client.HTTPException):
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


class StackTestCase(unittest.TestCase):
    """Base class: long diffs in failure messages."""
    maxDiff = None
