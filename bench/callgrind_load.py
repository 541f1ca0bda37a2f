#!/usr/bin/env python3
"""callgrind_load.py: a fixed number of requests for bench/callgrind.sh.

    bench/callgrind_load.py --url http://127.0.0.1:18080 --kind profile \
        --sessions sessions.txt --requests 2000 --connections 8 --out load.json

Unlike wrk (which runs for a duration and drops the requests in flight when
it stops), this sends exactly --requests requests and waits for every answer,
so that the instructions a server spent during the load belong to exactly
that many answered requests.

--connections keep-alive connections (one thread each) share the requests;
each connection cycles round-robin over its share of the users of
--sessions ("id token" lines, as bench/sessions.py writes them). Requests
are those of bench/wrk/scenario.lua, except that the session token goes in
an `Authorization: Bearer` header:

    profile    GET /api/v1/profile
    nickname   PATCH /api/v1/profile {"nickname": "bench-<id>-a"} (then -b, ...)
    login      POST /api/v1/login {"username": "user<id>", "password": ...}
               (users logged in before: the core's credential cache answers)

Every answer is checked like scenario.lua does: status 200, the username in
the body, the nickname just set (nickname) or a session cookie (login).
The JSON written to --out: requests sent, answered, ok, check_failures,
seconds, rps and the first failures. Exit status 1 when any check failed.
Python standard library only.
"""
import argparse
import http.client
import json
import re
import sys
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--kind", required=True, choices=["profile", "nickname", "login"])
    ap.add_argument("--sessions", required=True, help='file of "id token" lines')
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--password", default="password123")
    ap.add_argument("--out")
    args = ap.parse_args()

    users = []
    with open(args.sessions) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                users.append((int(parts[0]), parts[1]))
    if not users:
        sys.exit(f"no users in {args.sessions}")
    u = urllib.parse.urlsplit(args.url)
    conns = max(1, min(args.connections, args.requests))

    lock = threading.Lock()
    stats = {"answered": 0, "ok": 0, "check_failures": 0, "samples": []}

    def fail(why):
        with lock:
            stats["check_failures"] += 1
            if len(stats["samples"]) < 5:
                stats["samples"].append(why[:200])

    def worker(tid):
        # this connection's requests and users (disjoint per connection when
        # there are at least as many users as connections)
        n = args.requests // conns + (1 if tid < args.requests % conns else 0)
        mine = users[tid::conns] or users
        toggle = {}
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=120)
        answered = ok = 0
        for i in range(n):
            uid, token = mine[i % len(mine)]
            headers = {}
            body = None
            want_nick = None
            if args.kind == "profile":
                method = "GET"
                path = "/api/v1/profile"
                headers["Authorization"] = "Bearer " + token
            elif args.kind == "nickname":
                method = "PATCH"
                path = "/api/v1/profile"
                t = toggle.get(uid, "a")
                toggle[uid] = "b" if t == "a" else "a"
                want_nick = f"bench-{uid}-{t}"
                body = json.dumps({"nickname": want_nick})
                headers["Authorization"] = "Bearer " + token
                headers["Content-Type"] = "application/json"
            else:
                method = "POST"
                path = "/api/v1/login"
                body = json.dumps({"username": f"user{uid}", "password": args.password})
                headers["Content-Type"] = "application/json"
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read().decode("utf-8", "replace")
            except (http.client.HTTPException, OSError) as e:
                fail(f"user{uid}: {type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=120)
                continue
            answered += 1
            if resp.status != 200:
                fail(f"user{uid}: status {resp.status}: {data}")
                continue
            m = re.search(r'"username"\s*:\s*"user(\d+)"', data)
            if not m or int(m.group(1)) != uid:
                fail(f"user{uid}: wrong or no username: {data}")
                continue
            if want_nick is not None:
                m = re.search(r'"nickname"\s*:\s*"([^"]*)"', data)
                if not m or m.group(1) != want_nick:
                    fail(f"user{uid}: wrong nickname: {data}")
                    continue
            if args.kind == "login":
                cookies = [v for k, v in resp.getheaders() if k.lower() == "set-cookie"]
                if not any(c.startswith("session=") for c in cookies):
                    fail(f"user{uid}: no session cookie")
                    continue
            ok += 1
        conn.close()
        with lock:
            stats["answered"] += answered
            stats["ok"] += ok

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    out = {
        "kind": args.kind,
        "requests": args.requests,
        "connections": conns,
        "users": len(users),
        "answered": stats["answered"],
        "ok": stats["ok"],
        "check_failures": stats["check_failures"],
        "seconds": round(secs, 3),
        "rps": round(stats["answered"] / secs, 1) if secs > 0 else 0,
        "failure_samples": stats["samples"],
    }
    text = json.dumps(out) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0 if stats["check_failures"] == 0 and stats["ok"] == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
