"""Process behaviour under a supervisor (issue 4, "systemd", "Logs",
"Graceful behaviour"), on private profile-web and profile-core processes
started by the tests (free ports, the test instance's MySQL and Redis):

  * SIGTERM: the web server stops accepting, lets a request that is in
    flight finish (its core answers 1.5 s after the signal) and exits 0;
    the core does the same with an RPC in flight;
  * sd_notify: READY=1 once listening and WATCHDOG=1 pings when
    WATCHDOG_USEC asks for them (a fake NOTIFY_SOCKET);
  * socket activation: the core adopts a listening socket passed as fd 3
    (LISTEN_FDS), and a connection made while no core runs is answered by
    the next one;
  * journald: with JOURNAL_STREAM naming stderr, every line starts with
    an sd-daemon priority prefix (<6> info...);
  * [log] file + SIGHUP: after the file is moved away (logrotate), SIGHUP
    makes the server write to a new file at the configured path;
  * `make run` (scripts/stack.sh run) restarts a core that was killed, and
    `make stop` from another terminal ends that run instead of being undone
    by it.

The fake core below speaks the RPC framing (4-byte big-endian length +
protobuf) with a hand-rolled encoder for the few fields it needs.
"""

import http.client
import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import helpers

ROOT = helpers.REPO_ROOT
BUILD_DIR = os.path.join(ROOT, os.environ.get("PROFILE_BUILD_DIR", "build"))
WEB_BIN = os.path.join(BUILD_DIR, "profile-web")
CORE_BIN = os.path.join(BUILD_DIR, "profile-core")


# --- protobuf, just enough ----------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_varint(num, value):
    return varint(num << 3) + varint(value)


def field_bytes(num, data):
    return varint((num << 3) | 2) + varint(len(data)) + data


def decode(msg):
    """{field number: value} of a flat message (varints and byte strings)."""
    out, i = {}, 0
    while i < len(msg):
        key, i = read_varint(msg, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            out[num], i = read_varint(msg, i)
        elif wire == 2:
            n, i = read_varint(msg, i)
            out[num], i = msg[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wire)
    return out


def read_varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def read_frame(sock):
    head = recv_exact(sock, 4)
    return recv_exact(sock, struct.unpack(">I", head)[0])


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def write_frame(sock, payload):
    sock.sendall(struct.pack(">I", len(payload)) + payload)


# --- helpers ------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PROFILE_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")}
    env.update(extra)
    return env


def wait_port(port, proc, timeout_s=15):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("process exited with %s during start-up" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("port %d did not open" % port)


class FakeCore(threading.Thread):
    """Answers every RPC with status OK after delay_s; records arrivals."""

    def __init__(self, delay_s):
        super().__init__(daemon=True)
        self.delay_s = delay_s
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.received = threading.Event()

    def run(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        with conn:
            try:
                while True:
                    req = decode(read_frame(conn))
                    self.received.set()
                    time.sleep(self.delay_s)
                    write_frame(conn, field_varint(1, req[1]) + field_bytes(3, b"ok"))
            except (ConnectionError, OSError, IndexError):
                return

    def close(self):
        self.listener.close()


class Process:
    """A private server process with its output in a file."""

    def __init__(self, argv, env, tmp, pass_fds=()):
        self.out_path = os.path.join(tmp, "out-%d.log" % time.monotonic_ns())
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.out, env=env, cwd=ROOT,
                                     pass_fds=pass_fds)

    def text(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.out.close()


class DaemonTestCase(helpers.StackTestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="profile-daemon-")
        self.procs = []
        self.fakes = []

    def tearDown(self):
        for p in self.procs:
            p.stop()
        for f in self.fakes:
            f.close()
        subprocess.run(["rm", "-rf", self.tmp])

    def start_web(self, core_port, **env):
        port = free_port()
        p = Process([WEB_BIN, "-c", helpers.CONFIG_PATH],
                    clean_env(PROFILE_WEB_PORT=str(port), PROFILE_RPC_CORE_PORT=str(core_port), **env), self.tmp)
        self.procs.append(p)
        wait_port(port, p.proc)
        return p, port

    def fake_core(self, delay_s):
        fake = FakeCore(delay_s)
        fake.start()
        self.fakes.append(fake)
        return fake

    def notify_socket(self):
        path = os.path.join(self.tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        self.addCleanup(sock.close)
        return sock, path


class WebSigtermTest(DaemonTestCase):

    def test_in_flight_request_completes_and_exit_is_0(self):
        fake = self.fake_core(delay_s=1.5)
        web, port = self.start_web(fake.port)
        result = {}

        def ask():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            result["status"], result["body"] = resp.status, resp.read()
            conn.close()

        client = threading.Thread(target=ask)
        client.start()
        self.assertTrue(fake.received.wait(5), "the request never reached the core")
        web.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # no longer accepting while it drains
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        client.join(20)
        self.assertEqual(result.get("status"), 200, "in-flight request failed: %r" % result)
        self.assertEqual(web.proc.wait(timeout=15), 0, web.text())
        self.assertIn("web: stopped", web.text())


class NotifyTest(DaemonTestCase):

    def test_web_sends_ready_and_watchdog_pings(self):
        sock, path = self.notify_socket()
        fake = self.fake_core(delay_s=0)
        self.start_web(fake.port, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
        messages = [sock.recv(4096).decode() for _ in range(3)]
        self.assertIn("READY=1", messages[0])
        self.assertIn("WATCHDOG=1", messages[1:])

    def test_core_sends_ready_and_watchdog_pings_and_drains_on_sigterm(self):
        sock, path = self.notify_socket()
        port = free_port()
        core = Process([CORE_BIN, "-c", helpers.CONFIG_PATH],
                       clean_env(PROFILE_CORE_PORT=str(port), NOTIFY_SOCKET=path, WATCHDOG_USEC="400000",
                                 **{k: v for k, v in os.environ.items()
                                    if k in ("PROFILE_MYSQL_PORT", "PROFILE_REDIS_PORT")}),
                       self.tmp)
        self.procs.append(core)
        ready = sock.recv(4096).decode()
        self.assertIn("READY=1", ready)
        self.assertIn("WATCHDOG=1", sock.recv(4096).decode())
        # An RPC in flight when SIGTERM arrives is answered.
        conn = socket.create_connection(("127.0.0.1", port), timeout=20)
        with conn:
            write_frame(conn, field_varint(1, 77) + field_varint(2, 1) + field_bytes(3, b"127.0.0.1")
                        + field_bytes(5, b"user909") + field_bytes(6, helpers.PASSWORD.encode()))
            time.sleep(0.01)
            core.proc.send_signal(signal.SIGTERM)
            resp = decode(read_frame(conn))
        self.assertEqual(resp.get(1), 77)
        self.assertEqual(resp.get(2, 0), 0, "login failed: %r" % resp)  # STATUS_OK is the default
        self.assertTrue(resp.get(6), "no token in the answer")
        self.assertEqual(core.proc.wait(timeout=15), 0, core.text())
        self.assertIn("STOPPING=1", sock.recv(4096).decode())


def start_activated_core(listener, tmp, env_extra=None):
    """Starts profile-core the way systemd's socket activation does: the
    listening socket as fd 3, LISTEN_FDS=1 and LISTEN_PID = the core's pid."""
    env = clean_env(**(env_extra or {}))
    env["LISTEN_FDS"] = "1"
    argv = ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@" 3<&%d' % listener.fileno(), CORE_BIN, "-c",
            helpers.CONFIG_PATH]
    return Process(argv, env, tmp, pass_fds=(listener.fileno(),)), listener


def stack_store_env():
    return {k: v for k, v in os.environ.items() if k in ("PROFILE_MYSQL_PORT", "PROFILE_REDIS_PORT")}


def health_rpc(sock, rid):
    write_frame(sock, field_varint(1, rid) + field_varint(2, 5))
    return decode(read_frame(sock))


class SocketActivationTest(DaemonTestCase):

    def test_core_adopts_the_socket_and_a_restart_loses_no_connection(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        self.addCleanup(listener.close)
        # The core's own port setting must not matter: it adopts fd 3.
        env = dict(stack_store_env(), PROFILE_CORE_PORT="1")
        old, _ = start_activated_core(listener, self.tmp, env)
        self.procs.append(old)
        self.assertTrue(helpers.wait_for(lambda: "socket from systemd" in old.text(), 15), old.text())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            self.assertEqual(health_rpc(conn, 1).get(2, 0), 0)
        old.proc.send_signal(signal.SIGTERM)
        self.assertEqual(old.proc.wait(timeout=15), 0, old.text())
        # No core runs now, but the socket does: this connection waits in the backlog...
        waiting = socket.create_connection(("127.0.0.1", port), timeout=20)
        with waiting:
            write_frame(waiting, field_varint(1, 2) + field_varint(2, 5))
            new, _ = start_activated_core(listener, self.tmp, env)
            self.procs.append(new)
            # ...and is answered by the next core.
            resp = decode(read_frame(waiting))
        self.assertEqual(resp.get(1), 2)
        self.assertEqual(resp.get(2, 0), 0)


class JournalTest(DaemonTestCase):

    def test_lines_carry_sd_daemon_priorities_under_journald(self):
        fake = self.fake_core(delay_s=0)
        # JOURNAL_STREAM must name our stderr: the output file's device and inode.
        out = os.path.join(self.tmp, "journal.log")
        open(out, "wb").close()
        st = os.stat(out)
        port = free_port()
        with open(out, "ab") as handle:
            proc = subprocess.Popen([WEB_BIN, "-c", helpers.CONFIG_PATH], stdout=handle, stderr=handle, cwd=ROOT,
                                    env=clean_env(PROFILE_WEB_PORT=str(port), PROFILE_RPC_CORE_PORT=str(fake.port),
                                                  JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino)))
        try:
            wait_port(port, proc)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/nonexistent")
            conn.getresponse().read()
            conn.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=15), 0)
        lines = [line for line in open(out, encoding="utf-8").read().splitlines() if line]
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^<[3467]>(DEBUG|INFO |WARN |ERROR) rid=", line)
        self.assertTrue(any(line.startswith("<6>") and "access" in line for line in lines), lines)


class LogReopenTest(DaemonTestCase):

    def test_sighup_reopens_the_log_file_after_rotation(self):
        fake = self.fake_core(delay_s=0)
        log = os.path.join(self.tmp, "web.log")
        web, port = self.start_web(fake.port, PROFILE_LOG_FILE=log)

        def hit(path):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()

        hit("/before-rotation")
        self.assertTrue(helpers.wait_for(lambda: "/before-rotation" in open(log).read(), 3))
        os.rename(log, log + ".1")  # what logrotate does (no copytruncate)
        web.proc.send_signal(signal.SIGHUP)
        self.assertTrue(helpers.wait_for(lambda: os.path.exists(log), 3), "no new log file after SIGHUP")
        hit("/after-rotation")
        self.assertTrue(helpers.wait_for(lambda: "/after-rotation" in open(log).read(), 3))
        self.assertNotIn("/after-rotation", open(log + ".1").read())
        self.assertIn("/before-rotation", open(log + ".1").read())
        self.assertEqual(web.text(), "", "nothing may go to stderr when a log file is set")


class RunSupervisorTest(helpers.StackTestCase):
    """scripts/stack.sh run (make run) on a private instance of its own: free
    ports, its own var_dir, the test instance's MySQL and Redis."""

    def start_run(self):
        """Starts `run`; returns (stack command, process, output(), tmp dir)."""
        tmp = tempfile.mkdtemp(prefix="profile-run-")
        self.web_port, self.core_port = free_port(), free_port()
        test_var = os.path.join(ROOT, helpers.config_value("stack", "var_dir", "var/test"))
        config = os.path.join(tmp, "run.ini")
        with open(config, "w") as f:
            f.write("\n".join([
                "[web]", "port = %d" % self.web_port, "env_file = %s/.env.web" % test_var,
                "[rpc]", "core_port = %d" % self.core_port,
                "[core]", "port = %d" % self.core_port, "env_file = %s/.env" % test_var,
                "[picture]", "dir = %s/pictures" % tmp,
                "[mysql]", "port = %s" % helpers.config_value("mysql", "port", "23306"),
                "[redis]", "port = %s" % helpers.config_value("redis", "port", "26379"),
                "[nginx]", "enabled = 0",
                "[stack]", "manage_mysql = 0", "manage_redis = 0", "var_dir = %s/var" % tmp,
                "users = %s" % helpers.config_value("stack", "users", "20000"), ""]))
        cmd = [helpers.STACK_SCRIPT, "--config", config]
        log_path = os.path.join(tmp, "run.out")
        log = open(log_path, "w")
        self.addCleanup(log.close)
        run = subprocess.Popen(cmd + ["run"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                               env=clean_env(), start_new_session=True)

        def cleanup():
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
            subprocess.run(cmd + ["stop"], cwd=ROOT, env=clean_env(), capture_output=True, timeout=60)
        self.addCleanup(cleanup)

        def output():
            with open(log_path) as f:
                return f.read()

        wait_port(self.web_port, run, timeout_s=60)
        return cmd, run, output, tmp

    def kill_core(self, tmp, output):
        with open(os.path.join(tmp, "var", "run", "core.pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)
        self.assertTrue(helpers.wait_for(lambda: "restarting" in output(), 10), output())

    def stop_and_expect_run_to_end(self, cmd, run, output):
        stop = subprocess.run(cmd + ["stop"], cwd=ROOT, env=clean_env(), capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(stop.returncode, 0, stop.stdout + stop.stderr)
        try:
            rc = run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.fail("make run still running 30 s after make stop:\n" + output())
        text = output()
        self.assertEqual(rc, 0, text)
        self.assertIn("stopped from elsewhere", text)
        time.sleep(0.5)
        for port in (self.web_port, self.core_port):
            with self.assertRaises(OSError, msg="port %d still open:\n%s" % (port, text)):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return text

    def test_make_stop_ends_a_supervised_run_instead_of_restarting_it(self):
        # Found in a trial: `make stop` while `make run` supervised made the
        # supervisor start core and web again (it only watched for exits).
        cmd, run, output, tmp = self.start_run()
        self.kill_core(tmp, output)  # supervision is on: a killed core is started again
        wait_port(self.core_port, run, timeout_s=30)
        text = self.stop_and_expect_run_to_end(cmd, run, output)
        self.assertEqual(text.count("restarting"), 1, "restarted after make stop:\n" + text)

    def test_make_stop_during_the_restart_pause_leaves_nothing_running(self):
        # Found in the next trial: a stop that landed in the supervisor's 2 s
        # pause before a restart let it start the server after all.
        cmd, run, output, tmp = self.start_run()
        self.kill_core(tmp, output)  # "restarting it in 2 s": stop now, inside the pause
        text = self.stop_and_expect_run_to_end(cmd, run, output)
        self.assertNotIn("core: starting on 127.0.0.1:%d" % self.core_port,
                         text[text.index("restarting"):], text)


if __name__ == "__main__":
    unittest.main()
