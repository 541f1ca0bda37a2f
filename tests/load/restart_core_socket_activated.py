#!/usr/bin/env python3
"""Restart the core under wrk load the way systemd does with
profile-core.socket: this script holds the core's listening socket (as
systemd would), runs profile-core with it as fd 3 (LISTEN_FDS=1), and a
few seconds into a wrk run of CONNECTIONS connections reading
GET /api/v1/profile it stops the core (SIGTERM, drain, exit) and starts a
new one on the same socket. Prints wrk's answers by status.

Usage (with the test instance up, scripts/stack.sh --config etc/test.ini
test-up, and the same PROFILE_* overrides exported):
  tests/load/restart_core_socket_activated.py [SECONDS] [CONNECTIONS] [LUA]
LUA defaults to tests/load/profile_read.lua (reads); profile_mixed.lua
adds 10 % nickname writes.
The stack's own core is stopped for the run and started again afterwards.
"""

import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("PROFILE_CONFIG", "etc/test.ini")

import helpers  # noqa: E402

CONFIG = helpers.CONFIG_PATH
STACK = os.path.join(ROOT, "scripts", "stack.sh")
BUILD_DIR = os.path.join(ROOT, os.environ.get("PROFILE_BUILD_DIR", "build"))
LOG = os.path.join(ROOT, helpers.config_value("stack", "var_dir", "var"), "log", "core-activated.log")


def start_core(listener):
    env = dict(os.environ, LISTEN_FDS="1")
    argv = ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@" 3<&%d' % listener.fileno(),
            os.path.join(BUILD_DIR, "profile-core"), "-c", CONFIG]
    out = open(LOG, "ab")
    proc = subprocess.Popen(argv, stdout=out, stderr=out, env=env, cwd=ROOT, pass_fds=(listener.fileno(),))
    out.close()
    return proc


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    script = sys.argv[3] if len(sys.argv) > 3 else "tests/load/profile_read.lua"
    core_port = int(helpers.config_value("core", "port", "9090"))
    subprocess.run([STACK, "--config", CONFIG, "core-stop"], check=True, cwd=ROOT)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", core_port))
    listener.listen(4096)
    core = start_core(listener)
    try:
        time.sleep(2)
        resp, token = helpers.login("user911")
        if token is None:
            raise SystemExit("login failed: %r" % resp)
        wrk = subprocess.Popen(["wrk", "-t2", "-c%d" % connections, "-d%ds" % seconds, "--latency",
                                "-s", os.path.join(ROOT, script), helpers.BASE_URL],
                               env=dict(os.environ, PROFILE_TOKEN=token), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, cwd=ROOT)
        time.sleep(seconds / 4)
        start = time.monotonic()
        core.send_signal(signal.SIGTERM)
        rc = core.wait(timeout=30)
        stopped = time.monotonic()
        core = start_core(listener)
        out, _ = wrk.communicate(timeout=seconds + 60)
        print(out.decode())
        print("old core exited with status %d %.2f s after SIGTERM; the new one was started then"
              % (rc, stopped - start))
    finally:
        core.send_signal(signal.SIGTERM)
        core.wait(timeout=30)
        listener.close()
        subprocess.run([STACK, "--config", CONFIG, "core-start"], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
