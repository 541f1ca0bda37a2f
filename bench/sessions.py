#!/usr/bin/env python3
"""sessions.py: log in the benchmark's users before the profile and nickname
scenarios, in parallel over the JSON API, and write their session tokens.

    bench/sessions.py --url http://127.0.0.1:8080 --ids ids.txt --out sessions.txt

ids.txt holds one user id a line (user<id>, password --password). The output
has one "id token" line per id, in the order of ids.txt, and is written to a
temporary file renamed into place only when every login succeeded, so a
half-written file is never mistaken for a good one.

--reuse FILE: when FILE lists exactly the ids of ids.txt, every token's
expiry (the JWT "exp" claim) is at least --min-valid seconds away, and a
sample of the tokens is accepted by GET /api/v1/profile, the file is copied
instead of logging everyone in again (sessions last [core] token_ttl_s, one
hour by default).

Exit status 0, 1 when a login fails (the first failures are printed).
Python standard library only.
"""
import argparse
import base64
import http.client
import json
import os
import random
import shutil
import sys
import threading
import time
import urllib.parse


def connect(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)


def login(conn, user_id, password):
    """Returns (token, None) or (None, error text). Reconnects once on a
    dropped keep-alive connection."""
    body = json.dumps({"username": f"user{user_id}", "password": password})
    for attempt in range(2):
        try:
            conn.request("POST", "/api/v1/login", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        except (http.client.HTTPException, OSError) as e:
            conn.close()
            if attempt == 1:
                return None, f"user{user_id}: {e}"
            continue
        if resp.status != 200:
            return None, f"user{user_id}: HTTP {resp.status} {data[:200]!r}"
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie" and value.startswith("session="):
                return value.split(";", 1)[0][len("session="):], None
        return None, f"user{user_id}: no session cookie"
    return None, f"user{user_id}: unreachable"


def profile_ok(conn, token):
    try:
        conn.request("GET", "/api/v1/profile", headers={"Cookie": f"session={token}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except (http.client.HTTPException, OSError):
        return False


def jwt_exp(token):
    """The exp claim (Unix seconds) of a JWT, or 0 when it cannot be read.
    Only for choosing whether to reuse a token: the server checks it."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return int(json.loads(base64.urlsafe_b64decode(payload))["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return 0


def try_reuse(args, ids):
    try:
        with open(args.reuse) as f:
            pairs = [line.split() for line in f if line.strip()]
    except OSError:
        return False
    if [p[0] for p in pairs] != [str(i) for i in ids] or any(len(p) != 2 for p in pairs):
        return False
    left = min(jwt_exp(tok) for _, tok in pairs) - time.time()
    if left < args.min_valid:
        print(f"sessions: not reusing {args.reuse}: its first token expires in {left:.0f} s, "
              f"this run needs {args.min_valid} s", file=sys.stderr)
        return False
    conn = connect(args.url)
    sample = random.sample(pairs, min(50, len(pairs)))
    ok = all(profile_ok(conn, tok) for _, tok in sample)
    conn.close()
    if ok:
        shutil.copyfile(args.reuse, args.out)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="web server base URL")
    ap.add_argument("--ids", required=True, help="file of user ids, one a line")
    ap.add_argument("--out", required=True, help="where to write 'id token' lines")
    ap.add_argument("--password", default="password123")
    ap.add_argument("--workers", type=int, default=32, help="parallel connections")
    ap.add_argument("--reuse", help="earlier output to reuse when still valid")
    ap.add_argument("--min-valid", type=int, default=3600,
                    help="seconds every reused token must stay valid (default 3600)")
    args = ap.parse_args()

    with open(args.ids) as f:
        ids = [int(line) for line in f if line.strip()]
    if args.reuse and try_reuse(args, ids):
        print(f"sessions: reused {len(ids)} valid sessions from {args.reuse}", file=sys.stderr)
        return 0

    tokens = [None] * len(ids)
    errors = []
    lock = threading.Lock()
    next_index = [0]
    t0 = time.monotonic()

    def worker():
        conn = connect(args.url)
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
                if i >= len(ids) or len(errors) >= 10:
                    break
            token, err = login(conn, ids[i], args.password)
            if err:
                with lock:
                    errors.append(err)
            else:
                tokens[i] = token
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.workers)]
    for t in threads:
        t.start()
    tty = sys.stderr.isatty()
    last = 0.0
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        done = min(next_index[0], len(ids))
        el = time.monotonic() - t0
        # a live counter on a terminal, a line every 15 s in a log
        if tty or el - last >= 15:
            last = el
            msg = f"sessions: {done}/{len(ids)} logged in, {done / el:.0f}/s"
            print("\r" + msg if tty else msg, end="" if tty else "\n", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    if errors:
        for e in errors:
            print(f"sessions: login failed: {e}", file=sys.stderr)
        return 1
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        for i, tok in zip(ids, tokens):
            f.write(f"{i} {tok}\n")
    os.replace(tmp, args.out)
    print(f"sessions: {len(ids)} sessions in {time.monotonic() - t0:.1f} s -> {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
