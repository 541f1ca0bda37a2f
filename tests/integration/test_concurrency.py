"""Slow work must not stall fast requests (issue 2, "RPC": "profile reads
keep flowing while logins hash"): profile reads measured while other
clients keep logins (argon2id) or picture uploads (decode + resize +
encode) in flight."""

import http.client
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import threading
import time
import unittest

import helpers
import images
from helpers import get_profile, login, login_token

LOAD_CLIENTS = 16     # concurrent clients keeping slow requests in flight
READS = 60            # profile reads measured under that load
MEDIAN_LIMIT_S = 0.050
P90_LIMIT_S = 0.250


def setUpModule():
    helpers.require_stack()


class SlowWorkTest(helpers.StackTestCase):

    def measure_reads_under(self, slow_request):
        """Runs slow_request(i) in a loop on LOAD_CLIENTS threads and
        returns (sorted read latencies in seconds, read statuses, number of
        slow requests completed, their statuses)."""
        token = login_token(self, "user501")
        stop = threading.Event()
        done = []
        errors = []

        def load(i):
            while not stop.is_set():
                try:
                    done.append(slow_request(i))
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(LOAD_CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)  # let the slow requests pile up
            latencies, statuses = [], []
            for _ in range(READS):
                resp = get_profile(token, timeout=30)
                latencies.append(resp.elapsed)
                statuses.append(resp.status)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        self.assertEqual(errors, [], "load requests failed")
        return sorted(latencies), statuses, len(done), sorted(set(done))

    def assert_flowing(self, latencies, statuses, what):
        self.assertEqual(set(statuses), {200}, statuses)
        median = statistics.median(latencies)
        p90 = latencies[int(len(latencies) * 0.9) - 1]
        summary = ("profile reads under %d clients doing %s: median %.1f ms, p90 %.1f ms, max %.1f ms"
                   % (LOAD_CLIENTS, what, median * 1e3, p90 * 1e3, latencies[-1] * 1e3))
        self.assertLess(median, MEDIAN_LIMIT_S, summary)
        self.assertLess(p90, P90_LIMIT_S, summary)

    def test_profile_reads_keep_flowing_while_logins_hash(self):
        def slow(i):
            return login("user%d" % (510 + i))[0].status

        latencies, statuses, count, slow_statuses = self.measure_reads_under(slow)
        self.assertEqual(slow_statuses, [200])
        self.assertGreater(count, LOAD_CLIENTS, "the logins did not run")
        self.assert_flowing(latencies, statuses, "logins")

    def test_profile_reads_keep_flowing_while_pictures_are_processed(self):
        picture = images.png(1600, 1200)
        tokens = [login_token(self, "user%d" % (530 + i)) for i in range(LOAD_CLIENTS)]

        def slow(i):
            return helpers.request("PUT", "/api/v1/profile/picture", body=picture,
                                   headers={"Content-Type": "image/png"}, token=tokens[i], timeout=60).status

        latencies, statuses, count, slow_statuses = self.measure_reads_under(slow)
        self.assertEqual(slow_statuses, [200])
        self.assertGreater(count, LOAD_CLIENTS, "the uploads did not run")
        self.assert_flowing(latencies, statuses, "picture uploads")



class NicknameGroupCommitTest(helpers.StackTestCase):
    """Nickname edits that arrive together are committed together (one
    multi-row UPDATE per group, docs/performance.md): each edit must still
    be answered with its own value, land in MySQL and in the cache, and one
    bad edit in a group must not fail the others."""

    CLIENTS = 40
    ROUNDS = 5

    def scrape(self):
        from test_operations import direct, parse_metrics, value
        status, _, body = direct("GET", "/metrics")
        self.assertEqual(status, 200)
        samples, _ = parse_metrics(self, body.decode("utf-8"))
        return {name: value(samples, name) or 0
                for name in ("profile_core_nickname_edits_total", "profile_core_nickname_commits_total")}

    def run_rounds(self, clients):
        """clients: list of (token, label). Each round, every client sends one
        edit at once (a barrier); returns {index: [(sent, response)]}."""
        barrier = threading.Barrier(len(clients))
        results = {i: [] for i in range(len(clients))}
        errors = []

        def client(i, token, label):
            try:
                for r in range(self.ROUNDS):
                    nickname = "%s-%d-ünï 🎉" % (label, r)
                    barrier.wait(30)
                    results[i].append((nickname, helpers.patch_nickname(token, nickname)))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=client, args=(i, t, l), daemon=True)
                   for i, (t, l) in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        self.assertEqual(errors, [])
        return results

    def test_edits_sent_together_each_commit_their_own_value(self):
        suffix = helpers.unique_suffix()
        users = ["user%d" % (1101 + i) for i in range(self.CLIENTS)]
        clients = [(login_token(self, u), "%s-%s" % (u, suffix)) for u in users]
        # Two clients editing one user in the same rounds.
        twin = login_token(self, "user1150")
        clients += [(twin, "twinA-" + suffix), (twin, "twinB-" + suffix)]
        before = self.scrape()
        results = self.run_rounds(clients)
        after = self.scrape()

        for i in range(len(clients)):
            for sent, resp in results[i]:
                self.assertEqual(resp.status, 200, resp)
                self.assertEqual(resp.json()["nickname"], sent)
        for i, user in enumerate(users):
            last = results[i][-1][0]
            self.assertEqual(helpers.sql("SELECT nickname FROM users WHERE username = '%s'" % user),
                             [[last]])
            self.assertEqual(helpers.get_profile(clients[i][0]).json()["nickname"], last)
        twin_last = {results[len(users)][-1][0], results[len(users) + 1][-1][0]}
        stored = helpers.sql("SELECT nickname FROM users WHERE username = 'user1150'")[0][0]
        self.assertIn(stored, twin_last)
        self.assertEqual(helpers.get_profile(twin).json()["nickname"], stored)

        edits = after["profile_core_nickname_edits_total"] - before["profile_core_nickname_edits_total"]
        commits = after["profile_core_nickname_commits_total"] - before["profile_core_nickname_commits_total"]
        self.assertGreaterEqual(edits, len(clients) * self.ROUNDS)
        # Some edits shared a commit (the whole point); each commit holds at least one.
        self.assertLess(commits, edits, "no two edits were committed together")
        self.assertGreater(commits, 0)

    def test_a_deleted_user_in_a_group_fails_alone(self):
        suffix = helpers.unique_suffix()
        users = ["user%d" % (1201 + i) for i in range(20)]
        clients = [(login_token(self, u), "%s-%s" % (u, suffix)) for u in users]
        gone = "user1230"
        gone_token = login_token(self, gone)
        row = helpers.sql("SELECT id, nickname, password_hash FROM users WHERE username = '%s'" % gone)[0]
        helpers.sql("DELETE FROM users WHERE username = '%s'" % gone)
        try:
            clients.append((gone_token, "gone-" + suffix))
            results = self.run_rounds(clients)
        finally:
            helpers.sql("INSERT INTO users (id, username, nickname, password_hash) VALUES (%s, '%s', '%s', '%s')"
                        % (row[0], gone, row[1].replace("'", "''"), row[2]))
        for i in range(len(users)):
            for sent, resp in results[i]:
                self.assertEqual(resp.status, 200, resp)
                self.assertEqual(resp.json()["nickname"], sent)
            self.assertEqual(helpers.sql("SELECT nickname FROM users WHERE username = '%s'" % users[i]),
                             [[results[i][-1][0]]])
        gone_statuses = [resp.status for _, resp in results[len(users)]]
        # The first edit finds the row gone and ends the session; later ones present a dead session.
        self.assertEqual(set(gone_statuses), {401}, gone_statuses)


class ConnectionChurnTest(helpers.StackTestCase):
    """Thousands of keep-alive connections dropped while their requests are
    being answered (a load test ending, a proxy restarting) must leave the
    web server serving new ones and holding no socket for the old ones.
    Found with wrk: in libmicrohttpd's epoll mode (0.9.75) each 2,000-
    connection run that ended mid-request left ~1,900 dead sockets open,
    and after two such runs the web served nothing (0 req/s) - every worker
    thread was at its share of the connection limit."""

    RUNS = 3
    CONNECTIONS = 2000
    OVER_LIMIT = 4500  # > the web's connection limit (4,096 at most)

    def setUp(self):
        self.wrk = shutil.which("wrk")
        self.assertIsNotNone(self.wrk, "wrk is not installed (scripts/stack.sh deps installs it)")
        self.host = helpers.config_value("web", "host", "127.0.0.1")
        self.port = int(helpers.config_value("web", "port", "8080"))
        with open(helpers._var_path("run", "web.pid")) as f:
            self.pid = int(f.read().strip())

    def descriptors(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def run_wrk(self, connections, path, *extra):
        """wrk -t2 -c<connections> -d2s on path of the web server, with its
        descriptor limit raised to fit; returns (output, requests served)."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = connections + 256
        if hard != resource.RLIM_INFINITY and hard < want:
            self.skipTest("RLIMIT_NOFILE hard limit %d < %d: wrk cannot open the connections" % (hard, want))

        def raise_limit():
            limit = want if hard == resource.RLIM_INFINITY else min(hard, max(want, soft))
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

        proc = subprocess.run([self.wrk, "-t2", "-c%d" % connections, "-d2s", "--timeout", "5s"] + list(extra)
                              + ["http://%s:%d%s" % (self.host, self.port, path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                              preexec_fn=raise_limit)
        out = proc.stdout.decode("utf-8", "replace")
        self.assertEqual(proc.returncode, 0, out)
        match = re.search(r"(\d+) requests in", out)
        self.assertIsNotNone(match, out)
        return out, int(match.group(1))

    def assert_descriptors_freed(self, before):
        freed = helpers.wait_for(lambda: self.descriptors() < before + 100, 10)
        self.assertTrue(freed, "the web still holds %d descriptors (%d before the runs)"
                        % (self.descriptors(), before))

    def test_web_serves_and_frees_sockets_after_thousands_of_connections_leave(self):
        # Profile reads: each holds its connection for an RPC, so wrk's end
        # drops many connections in the middle of a request.
        token = login_token(self, "user1300")
        before = self.descriptors()
        served = []
        for _ in range(self.RUNS):
            out, count = self.run_wrk(self.CONNECTIONS, "/api/v1/profile",
                                      "-H", "Cookie: %s=%s" % (helpers.SESSION_COOKIE, token))
            self.assertNotIn("Non-2xx", out)
            served.append(count)
        # Every run is served, not only the first (with the bug: 0 in the third).
        for count in served:
            self.assertGreater(count, self.CONNECTIONS, "requests served per run: %s" % served)
        self.assert_descriptors_freed(before)
        start = time.monotonic()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            self.assertEqual(conn.getresponse().status, 200)
        finally:
            conn.close()
        self.assertLess(time.monotonic() - start, 1.0)

    def test_connections_beyond_the_limit_are_refused_and_leave_the_server_serving(self):
        # The connections beyond the limit get a bare 503; the server must
        # serve normally afterwards. Found by a fresh-user trial:
        # libmicrohttpd's own refusal left a worker's mutex locked, 15 of 16
        # threads served nothing again and SIGTERM hung.
        before = self.descriptors()
        out, count = self.run_wrk(self.OVER_LIMIT, "/healthz")
        self.assertGreater(count, self.OVER_LIMIT, out)
        # Once the flood has left (its 4,500 sockets closed: slower with 4 threads under
        # AddressSanitizer, where the next run then found the limit still taken),
        # 2,000 connections are served with nothing refused.
        self.assert_descriptors_freed(before)
        out, count = self.run_wrk(self.CONNECTIONS, "/healthz")
        self.assertGreater(count, self.CONNECTIONS, out)
        self.assertNotIn("Non-2xx", out)
        self.assert_descriptors_freed(before)

    def test_abandoned_connections_are_logged_at_most_ten_lines_a_second(self):
        # libmicrohttpd logs each connection a client abandons mid-request; a
        # trial counted 5,096 such lines from one burst. At most 10 a second
        # are written, and the next line says how many were left out.
        log = helpers._var_path("log", "web.log")
        if not os.path.exists(log):
            self.skipTest("the web server does not log to %s" % log)
        start_size = os.path.getsize(log)
        started = time.monotonic()
        socks = []
        try:
            for _ in range(800):
                sock = socket.create_connection((self.host, self.port), timeout=5)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
                socks.append(sock)
            time.sleep(0.5)
        finally:
            for sock in socks:
                sock.close()
        time.sleep(2.5)
        elapsed = time.monotonic() - started
        # one more abandoned connection, seconds later, brings the report of the others
        sock = socket.create_connection((self.host, self.port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.3)
        sock.close()
        self.assertTrue(helpers.wait_for(lambda: b"more messages not logged" in self.log_since(log, start_size), 5),
                        "no line says how many messages were left out")
        lines = self.log_since(log, start_size).count(b"libmicrohttpd:")
        self.assertLessEqual(lines, 10 * (elapsed + 2) + 2, "%d libmicrohttpd lines" % lines)

    @staticmethod
    def log_since(path, offset):
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()

if __name__ == "__main__":
    unittest.main()
