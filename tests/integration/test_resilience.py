"""Infrastructure failures against the running stack: the core server or
MySQL stopped and started again with scripts/stack.sh while the web server
keeps running (Redis too: the script has redis-stop/redis-start). Infrastructure failures must be 503 (never 401, never a
hang), and service must come back by itself (issue 2, "RPC" and "Tests").

Every class restores what it stopped (class cleanups run even when a test
or setUpClass fails). Named so it runs last in an alphabetical run.
"""

import concurrent.futures
import http.client
import os
import random
import signal
import threading
import time
import unittest

import helpers
import images
from helpers import assert_json_error, assert_profile_object, get_profile, login, login_token, request, stack

QUICK_S = 2.0           # the web must answer 503 within this while the core is down
RECOVERY_S = 5.0        # requests must succeed again within this after core-start
MYSQL_RECOVERY_S = 20.0  # login must work again within this after mysql-start


def setUpModule():
    helpers.require_stack()


def timed(fn, *args, **kw):
    start = time.monotonic()
    resp = fn(*args, **kw)
    return resp, time.monotonic() - start


def uncached_user():
    """A user no other test logs in as, so neither the profile cache nor any
    session holds it (a random one per run, from the top of the range)."""
    return "user%d" % random.randint(10001, 20000)


def stop_with_restore(cls, service):
    """Stops service ("core", "mysql" or "redis") and registers its restart as a
    class cleanup, so the stack is whole again whatever happens."""
    def restore():
        stack(service + "-start")
        if not helpers.wait_for(lambda: login("user1")[0].status == 200, 30):
            raise AssertionError("stack not usable 30 s after %s-start" % service)
    cls.addClassCleanup(restore)
    stack(service + "-stop")


def assert_stop_keeps_edits_honest(testcase, stop_command, user_format, first_id):
    """24 clients keep their connections busy with nickname edits (unique
    values) while stop_command runs: afterwards MySQL must hold each client's
    last value answered 200, i.e. no edit answered 503 (or not at all, the
    server being gone) was committed and no edit answered 200 was lost;
    every answer but 200 must be a 503."""
    suffix = helpers.unique_suffix()
    users = [user_format % (first_id + i) for i in range(24)]
    tokens = [login_token(testcase, u) for u in users]
    before = {u: helpers.sql("SELECT nickname FROM users WHERE username = '%s'" % u)[0][0]
              for u in users}
    last_ok, ended, errors = {}, {}, []
    stopping, stop = threading.Event(), threading.Event()

    def client(i):
        try:
            for n in range(100000):
                if stop.is_set():
                    return
                nickname = "stop-%s-%d-%d" % (suffix, i, n)
                try:
                    resp = helpers.patch_nickname(tokens[i], nickname)
                except (ConnectionError, http.client.HTTPException) as exc:
                    ended[i] = (nickname, "no answer: %s" % type(exc).__name__)  # the server is gone
                    return
                if resp.status in (502, 504) and stopping.is_set():
                    # through nginx, once the web is gone: no answer from the web either
                    ended[i] = (nickname, "no answer: nginx %d" % resp.status)
                    return
                if resp.status != 200:
                    ended[i] = (nickname, resp.status)
                    return
                last_ok[i] = nickname
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(users))]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    stopping.set()
    stack(stop_command)
    stop.set()
    for thread in threads:
        thread.join(30)
    testcase.assertEqual(errors, [])
    testcase.assertTrue(last_ok, "no edit succeeded before the stop")
    statuses = {status for _, status in ended.values()}
    testcase.assertLessEqual({s for s in statuses if not str(s).startswith("no answer")}, {503})
    for i, user in enumerate(users):
        held = helpers.sql("SELECT nickname FROM users WHERE username = '%s'" % user)[0][0]
        expected = last_ok.get(i, before[user])
        testcase.assertEqual(held, expected, "%s: MySQL holds %r; last answered 200: %r; then %r"
                             % (user, held, expected, ended.get(i)))


class CoreDownTest(helpers.StackTestCase):

    @classmethod
    def setUpClass(cls):
        resp, cls.token = login("user401")
        if cls.token is None:
            raise AssertionError("login before stopping the core failed: %r" % resp)
        stop_with_restore(cls, "core")

    def test_profile_answers_503_quickly(self):
        resp, elapsed = timed(get_profile, self.token, timeout=15)
        assert_json_error(self, resp, 503)
        self.assertLess(elapsed, QUICK_S, "503 took %.2f s" % elapsed)

    def test_login_answers_503_quickly(self):
        resp, elapsed = timed(login, "user401")
        assert_json_error(self, resp[0], 503)
        self.assertIsNone(resp[1])
        self.assertLess(elapsed, QUICK_S, "503 took %.2f s" % elapsed)

    def test_every_api_endpoint_answers_503_quickly(self):
        calls = {
            "patch nickname": lambda: helpers.patch_nickname(self.token, "core down"),
            "put picture": lambda: request("PUT", "/api/v1/profile/picture", body=images.png(8, 8),
                                           headers={"Content-Type": "image/png"}, token=self.token),
            "logout": lambda: request("POST", "/api/v1/logout", body={}, token=self.token),
        }
        for name, call in calls.items():
            with self.subTest(call=name):
                resp, elapsed = timed(call)
                assert_json_error(self, resp, 503)
                self.assertLess(elapsed, QUICK_S, "503 took %.2f s" % elapsed)

    def test_html_pages_answer_503_not_a_redirect_or_401(self):
        # A logged-in user must not be sent to the login page (or told the
        # password is wrong) because the core is down.
        cases = {
            "GET /profile": lambda: request("GET", "/profile", token=self.token),
            "POST /login": lambda: helpers.post_login_form("user401"),
        }
        for name, call in cases.items():
            with self.subTest(page=name):
                resp, elapsed = timed(call)
                self.assertEqual(resp.status, 503, resp)
                self.assertLess(elapsed, QUICK_S, "503 took %.2f s" % elapsed)

    def test_concurrent_requests_all_answer_503_quickly(self):
        def one(_):
            return timed(get_profile, self.token, timeout=15)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(48)))
        statuses = sorted({resp.status for resp, _ in results})
        slowest = max(elapsed for _, elapsed in results)
        self.assertEqual(statuses, [503])
        self.assertLess(slowest, QUICK_S, "slowest 503 took %.2f s" % slowest)


class CoreHungTest(helpers.StackTestCase):
    """A core that accepts but never answers (SIGSTOP): every request waits its
    io_timeout_ms and gets 503, and meanwhile no web thread is held, so
    requests that need no core are answered at once (the fast lane's RPC
    reactor, src/rpc/async.h; with blocking RPCs a few dozen of these
    requests took every web thread for 2 s)."""

    @classmethod
    def setUpClass(cls):
        resp, cls.token = login("user403")
        if cls.token is None:
            raise AssertionError("login before freezing the core failed: %r" % resp)
        with open(helpers._var_path("run", "core.pid")) as f:
            cls.core_pid = int(f.read().strip())
        os.kill(cls.core_pid, signal.SIGSTOP)
        cls.addClassCleanup(os.kill, cls.core_pid, signal.SIGCONT)

    def test_waiting_requests_hold_no_thread_and_all_answer_503(self):
        io_timeout_s = int(helpers.config_value("rpc", "io_timeout_ms", "2000")) / 1000.0
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            waiting = [pool.submit(timed, get_profile, self.token, timeout=15) for _ in range(64)]
            time.sleep(0.3)  # all 64 are in flight at the core now
            healthz = [timed(request, "GET", "/healthz", timeout=5) for _ in range(5)]
            results = [f.result() for f in waiting]
        for resp, elapsed in healthz:
            self.assertEqual(resp.status, 200)
            self.assertLess(elapsed, 0.5, "/healthz took %.2f s beside a hung core" % elapsed)
        statuses = sorted({resp.status for resp, _ in results})
        slowest = max(elapsed for _, elapsed in results)
        self.assertEqual(statuses, [503])
        self.assertLess(slowest, io_timeout_s + 1.5, "slowest 503 took %.2f s" % slowest)

    def test_requests_with_a_refused_body_hold_no_thread_either(self):
        # A body over the 64 KiB cap is refused from the headers, and the page
        # answered early may still need the core (a review found these took
        # a blocking RPC on the loop thread, 4 of them every thread).
        def oversized(path):
            start = time.monotonic()
            resp, _ = helpers.request_large("GET", path, 70000, token=self.token, timeout=15)
            return resp, time.monotonic() - start

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            paths = ["/api/v1/profile", "/profile", "/edit", "/"] * 4
            waiting = [pool.submit(oversized, path) for path in paths]
            time.sleep(0.3)
            healthz = [timed(request, "GET", "/healthz", timeout=5) for _ in range(5)]
            results = [f.result() for f in waiting]
        for resp, elapsed in healthz:
            self.assertEqual(resp.status, 200)
            self.assertLess(elapsed, 0.5, "/healthz took %.2f s beside a hung core" % elapsed)
        io_timeout_s = int(helpers.config_value("rpc", "io_timeout_ms", "2000")) / 1000.0
        for resp, elapsed in results:
            self.assertLess(elapsed, io_timeout_s + 1.5, "%r took %.2f s" % (resp, elapsed))


class CoreRestartTest(helpers.StackTestCase):

    def test_requests_succeed_again_after_core_restart_without_restarting_web(self):
        token = login_token(self, "user402")
        self.addCleanup(self.ensure_core_running)
        self.core_stopped = True
        stack("core-stop")
        assert_json_error(self, get_profile(token), 503)
        stack("core-start")
        self.core_stopped = False
        start = time.monotonic()
        ok = helpers.wait_for(lambda: get_profile(token, timeout=5).status == 200, RECOVERY_S)
        self.assertTrue(ok, "no 200 within %.0f s of core-start" % RECOVERY_S)
        # The session survives the restart (it lives in Redis) and the
        # answer is this user's.
        assert_profile_object(self, get_profile(token), "user402")
        self.assertTrue(login("user402")[1], "login fails after the core restart")
        print("\n  recovered %.2f s after core-start" % (time.monotonic() - start))

    def test_no_request_fails_once_core_is_back(self):
        # Warm the pool with many connections, restart the core without any
        # request in between (every pooled connection is now stale), then
        # once the first request succeeds no request may fail.
        token = login_token(self, "user403")
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            warm = list(pool.map(lambda _: get_profile(token).status, range(64)))
        self.assertEqual(set(warm), {200})
        self.addCleanup(self.ensure_core_running)
        self.core_stopped = True
        stack("core-stop")
        stack("core-start")
        self.core_stopped = False
        ok = helpers.wait_for(lambda: get_profile(token, timeout=5).status == 200, RECOVERY_S)
        self.assertTrue(ok, "no 200 within %.0f s of core-start" % RECOVERY_S)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda _: get_profile(token).status, range(64)))
        self.assertEqual([s for s in statuses if s != 200], [], "failures after the core was back")

    def test_core_stop_under_load_never_answers_503_for_a_committed_edit(self):
        # The drain must answer the edits in progress and start no new one, so
        # an edit answered 503 was never committed and one answered 200 was (a
        # fresh-user trial saw a committed edit answered 503).
        self.addCleanup(self.ensure_core_running)
        self.core_stopped = True
        assert_stop_keeps_edits_honest(self, "core-stop", "user%d", 1301)

    core_stopped = False

    def ensure_core_running(self):
        if self.core_stopped:
            stack("core-start")
            self.core_stopped = False


class WebStopTest(helpers.StackTestCase):
    """SIGTERM to the web server under load (the stack restarts it after
    each test): what is in progress finishes, nothing new starts, and the
    process exits within its drain (5 s) however much work is queued."""

    def setUp(self):
        self.addCleanup(self.start_web)

    def start_web(self):
        stack("web-start")
        if not helpers.wait_for(lambda: request("GET", "/healthz", timeout=2).status == 200, 30):
            raise AssertionError("web not back 30 s after web-start")

    def test_web_stop_under_load_never_answers_503_for_a_committed_edit(self):
        # Found by a fresh-user trial: keep-alive clients kept bringing new edits
        # during the drain, and those still in flight at its end were answered
        # 503 after the core had committed them.
        assert_stop_keeps_edits_honest(self, "web-stop", "user%d", 1331)

    def test_web_stop_with_queued_cold_logins_exits_within_its_drain(self):
        # Logins that each need argon2id (an unknown user costs the same as a
        # real one, by design): 600 took 14-23 s to drain in a trial on a VM
        # hashing ~65/s, but a CPU hashing ~130/s cleared 600 within the 5 s
        # drain and the test proved nothing. 2,000 queued logins outlast the
        # drain up to ~330 hashes/s; those not started by its end must get
        # 503, and every one an answer.
        prefix = "nobody-%s-" % helpers.unique_suffix()
        results, errors = [], []

        def one(i):
            try:
                results.append(login(prefix + str(i), timeout=60)[0].status)
            except Exception as exc:  # noqa: BLE001 - a reset connection is a failure too
                errors.append(exc)

        n = 2000
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        start = time.monotonic()
        out = stack("web-stop")
        took = time.monotonic() - start
        for thread in threads:
            thread.join(60)
        self.assertNotIn("SIGKILL", out)
        # The drain (5 s) + up to 1 s to flush the answers it decided last +
        # answering every queued connection 503 and the stop script's polling:
        # 7.1 s inside the web and 8.9 s here once on a loaded CI machine with
        # 2,000 queued (the defect this guards against took 14-23 s).
        self.assertLess(took, 10.5, "web-stop took %.1f s" % took)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), n)
        self.assertLessEqual(set(results), {401, 503})
        self.assertGreater(results.count(503), 0, "every queued login ran (%d answered 401): the "
                           "drain did not cut the queue" % results.count(401))


class MysqlDownTest(helpers.StackTestCase):

    @classmethod
    def setUpClass(cls):
        wrong = login("user404", "wrong-password")[0]
        if wrong.status != 401:
            raise AssertionError("wrong password before stopping MySQL: %r" % wrong)
        cls.bad_credentials_code = wrong.json()["error"]["code"]
        # A user whose profile and credential are cached before MySQL goes away.
        resp, cls.cached_token = login("user405")
        if resp.status != 200 or helpers.get_profile(cls.cached_token).status != 200:
            raise AssertionError("login of user405 before stopping MySQL: %r" % resp)
        stop_with_restore(cls, "mysql")

    def assert_503_not_401(self, resp):
        error = assert_json_error(self, resp, 503)
        self.assertNotEqual(error["code"], self.bad_credentials_code,
                            "an infrastructure failure is reported as bad credentials: %r" % resp)
        self.assertIsNone(resp.cookie(), resp)

    def test_failed_nickname_change_keeps_the_cached_profile_and_login(self):
        # The UPDATE never reached MySQL, so the cached profile is still the
        # truth: dropping it made this user's reads and logins fail until
        # MySQL came back (found by a fresh-user trial).
        before = helpers.get_profile(self.cached_token)
        self.assertEqual(before.status, 200, before)
        resp = helpers.patch_nickname(self.cached_token, "during outage")
        self.assert_503_not_401(resp)
        after = helpers.get_profile(self.cached_token)
        self.assertEqual(after.status, 200, after)
        self.assertEqual(after.json()["nickname"], before.json()["nickname"])
        self.assertEqual(login("user405")[0].status, 200)

    def test_login_of_uncached_user_is_503_not_401(self):
        resp, elapsed = timed(login, uncached_user())
        self.assert_503_not_401(resp[0])
        self.assertLess(elapsed, 15, "answer took %.1f s" % elapsed)

    def test_wrong_password_of_uncached_user_is_503_not_401(self):
        # The core cannot know the password is wrong without MySQL.
        resp, _ = login(uncached_user(), "wrong-password")
        self.assert_503_not_401(resp)

    def test_html_login_is_503_not_401(self):
        resp = helpers.post_login_form(uncached_user())
        self.assertEqual(resp.status, 503, resp)
        self.assertEqual(resp.content_type, "text/html", resp)
        self.assertIsNone(resp.cookie(), resp)

    def test_repeated_logins_stay_503(self):
        # Failed reconnects must not turn into "wrong password" later on
        # (e.g. once a connection pool is exhausted).
        statuses = [login(uncached_user())[0].status for _ in range(10)]
        self.assertEqual(set(statuses), {503}, statuses)


class MysqlRestartTest(helpers.StackTestCase):

    def test_login_works_again_after_mysql_restart(self):
        user = uncached_user()
        stack("mysql-stop")
        try:
            self.assertEqual(login(user)[0].status, 503)
        finally:
            stack("mysql-start")
        start = time.monotonic()
        ok = helpers.wait_for(lambda: login(user)[0].status == 200, MYSQL_RECOVERY_S, interval_s=0.5)
        self.assertTrue(ok, "login still failing %.0f s after mysql-start: %r"
                        % (MYSQL_RECOVERY_S, login(user)[0]))
        print("\n  login recovered %.2f s after mysql-start" % (time.monotonic() - start))
        resp, _ = login(user, "wrong-password")
        assert_json_error(self, resp, 401)



class RedisDownTest(helpers.StackTestCase):
    """Sessions live in Redis: without it a valid session cannot be checked,
    which is an outage (503), not a logged-out user (401)."""

    @classmethod
    def setUpClass(cls):
        resp, cls.token = login("user405")
        if cls.token is None:
            raise AssertionError("login before stopping Redis failed: %r" % resp)
        stop_with_restore(cls, "redis")

    def test_profile_with_valid_session_is_503_not_401(self):
        resp, elapsed = timed(get_profile, self.token, timeout=15)
        assert_json_error(self, resp, 503)
        self.assertLess(elapsed, 5, "answer took %.1f s" % elapsed)

    def test_login_is_503_not_401(self):
        resp, token = login("user405")
        assert_json_error(self, resp, 503)
        self.assertIsNone(token)

    def test_html_profile_is_503_not_a_redirect(self):
        resp = request("GET", "/profile", token=self.token)
        self.assertEqual(resp.status, 503, resp)


class RedisRestartTest(helpers.StackTestCase):

    def test_login_works_again_after_redis_restart(self):
        stack("redis-stop")
        try:
            self.assertEqual(login("user406")[0].status, 503)
        finally:
            stack("redis-start")
        ok = helpers.wait_for(lambda: login("user406")[0].status == 200, RECOVERY_S * 2, interval_s=0.2)
        self.assertTrue(ok, "login still failing %.0f s after redis-start: %r" % (RECOVERY_S * 2, login("user406")[0]))
        token = login_token(self, "user406")
        assert_profile_object(self, get_profile(token), "user406")


if __name__ == "__main__":
    unittest.main()
