"""Slow work must not stall fast requests (issue 2, "RPC": "profile reads
keep flowing while logins hash"): profile reads measured while other
clients keep logins (argon2id) or picture uploads (decode + resize +
encode) in flight."""

import statistics
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


if __name__ == "__main__":
    unittest.main()
