#!/usr/bin/env python3
"""callgrind_report.py: figures of bench/callgrind.sh from callgrind dumps.

    bench/callgrind_report.py scenario DUMP LOAD_JSON IDLE_DUMP IDLE_S OUT_PREFIX
        Reads one dump (the counts of one scenario's load, from zero to dump)
        and the load client's JSON; writes OUT_PREFIX.objects.txt (exclusive
        Ir per ELF object, and the malloc family inside libc) and
        OUT_PREFIX.json (total Ir, requests, Ir/request, object shares, the
        idle estimate). Exit status 1 when a request failed its check.

    bench/callgrind_report.py summary OUTDIR
        Writes OUTDIR/summary.md: one table row per process and scenario
        from OUTDIR/*/*.json (the files the scenario command wrote).

Callgrind counts the instructions executed in user space by the process
(every thread): the kernel's share (system calls, the network stack) is
not in these figures. Python standard library only.
"""
import glob
import json
import os
import re
import sys

# glibc's allocator: the functions counted as "malloc" inside libc.so.6
MALLOC_RE = re.compile(
    r"^(__libc_)?(malloc|free|calloc|realloc|memalign|posix_memalign|aligned_alloc|cfree)\b"
    r"|^_int_(malloc|free|realloc|memalign)|^malloc_consolidate|^unlink_chunk|^tcache_"
    r"|^sysmalloc|^systrim|^arena_get2|^__malloc_arena|^free_perturb|^alloc_perturb")


def parse_dump(path):
    """Returns (total Ir, {object: self Ir}, {(object, function): self Ir})."""
    names = {"ob": {}, "fn": {}}
    ob = fn = None
    by_obj = {}
    by_fn = {}
    total = summary = None
    skip_next_cost = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip_next_cost:  # the inclusive cost of a call: not self cost
                    skip_next_cost = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    ir = int(parts[1])
                    by_obj[ob] = by_obj.get(ob, 0) + ir
                    key = (ob, fn)
                    by_fn[key] = by_fn.get(key, 0) + ir
                continue
            if line.startswith("calls="):
                skip_next_cost = True
                continue
            # name compression: "ob=(3) /path" defines id 3, "ob=(3)" uses it;
            # ob/cob share one table of ids, fn/cfn another
            m = re.match(r"^(c?)(ob|fn)=(?:\((\d+)\))? ?(.*)$", line)
            if m:
                called, kind, num, name = m.groups()
                if num is not None:
                    if name:
                        names[kind][num] = name
                    else:
                        name = names[kind].get(num, "?")
                if not called:
                    if kind == "ob":
                        ob = name
                    else:
                        fn = name
                continue
            if line.startswith("summary:"):
                summary = int(line.split()[1])
            elif line.startswith("totals:"):
                total = int(line.split()[1])
    # "totals:" (the sum of the dumped self costs) is used; callgrind's
    # "summary:" line can differ from it by a few thousand Ir
    own = sum(by_obj.values())
    if total is None:
        total = own
    return total, by_obj, by_fn


def short(obj):
    return os.path.basename(obj or "?")


def pct(a, b):
    return 100.0 * a / b if b else 0.0


def cmd_scenario(dump, load_json, idle_dump, idle_s, prefix):
    with open(load_json) as f:
        load = json.load(f)
    total, by_obj, by_fn = parse_dump(dump)
    idle_total = parse_dump(idle_dump)[0] if idle_dump and os.path.exists(idle_dump) else 0
    idle_rate = idle_total / float(idle_s) if float(idle_s) > 0 else 0.0
    requests = load["ok"]
    malloc = sum(v for (o, fname), v in by_fn.items()
                 if short(o).startswith("libc.so") and fname and MALLOC_RE.search(fname))
    objs = sorted(by_obj.items(), key=lambda kv: -kv[1])
    lines = [f"# exclusive Ir per ELF object: {os.path.basename(dump)}",
             f"# total {total:,} Ir, {requests} requests, {total / max(requests, 1):,.0f} Ir/request", ""]
    lines.append(f"{'Ir':>16} {'share':>7} {'Ir/request':>12}  object")
    for o, v in objs:
        lines.append(f"{v:>16,} {pct(v, total):6.2f}% {v / max(requests, 1):>12,.0f}  {o}")
    lines += ["", "of which glibc malloc/free/realloc family (inside libc.so.6):",
              f"{malloc:>16,} {pct(malloc, total):6.2f}% {malloc / max(requests, 1):>12,.0f}"]
    with open(prefix + ".objects.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    # the window from zero to dump also holds idle time (timers, sweeps):
    # estimated from the idle run's rate over the load's wall time
    idle_est = idle_rate * float(load["seconds"])
    out = {
        "scenario": os.path.basename(prefix),
        "total_ir": total,
        "requests": requests,
        "answered": load["answered"],
        "check_failures": load["check_failures"],
        "failure_samples": load.get("failure_samples", []),
        "connections": load["connections"],
        "users": load["users"],
        "seconds": load["seconds"],
        "ir_per_request": round(total / requests) if requests else None,
        "idle_ir_per_s": round(idle_rate),
        "idle_share_est_pct": round(pct(idle_est, total), 3),
        "objects": {short(o): v for o, v in objs},
        "libc_malloc_ir": malloc,
    }
    with open(prefix + ".json", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    ok = load["check_failures"] == 0 and load["ok"] == load["requests"]
    print(f"{out['scenario']}: {total:,} Ir / {requests} requests = "
          f"{total / max(requests, 1):,.0f} Ir/request"
          + ("" if ok else f" (CHECK FAILURES: {load['check_failures']})"))
    return 0 if ok else 1


# object basename prefix -> column of the summary's share table
GROUPS = [
    ("ours", ("profile-core", "profile-web")),
    ("libc", ("libc.so",)),
    ("protobuf-c", ("libprotobuf-c",)),
    ("jansson", ("libjansson",)),
    ("libcrypto", ("libcrypto",)),
    ("libjwt", ("libjwt",)),
    ("libb64", ("libb64",)),
    ("hiredis", ("libhiredis",)),
    ("microhttpd", ("libmicrohttpd",)),
    ("mariadb", ("libmariadb",)),
    ("sodium", ("libsodium",)),
]


def cmd_summary(outdir):
    rows = []
    # web before core, scenarios in the order they ran
    paths = glob.glob(os.path.join(outdir, "*", "*.json"))
    paths.sort(key=lambda p: (os.path.basename(os.path.dirname(p)) != "web",
                              os.path.dirname(p), os.path.getmtime(p)))
    for path in paths:
        if path.endswith(".load.json") or path.endswith(".warmup.json"):
            continue
        with open(path) as f:
            d = json.load(f)
        if "scenario" not in d:
            continue
        d["process"] = os.path.basename(os.path.dirname(path))
        rows.append(d)
    info = {}
    ipath = os.path.join(outdir, "run.info")
    if os.path.exists(ipath):
        with open(ipath) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    info[k] = v
    out = ["# callgrind: instructions per request", ""]
    if info:
        out.append("Run: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".")
        out.append("")
    out += ["Ir = instructions executed in user space by the process (all threads) from",
            "`callgrind_control --zero` before the load to `--dump` after it; the kernel's",
            "share is not counted. Idle = estimated share of the window spent idle",
            "(the idle run's Ir/s times the load's seconds).", "",
            "| process | scenario | requests | check failures | total Ir | Ir/request | idle (est.) | s |",
            "|---|---|--:|--:|--:|--:|--:|--:|"]
    for d in rows:
        out.append(f"| {d['process']} | {d['scenario']} | {d['requests']:,} | {d['check_failures']} | "
                   f"{d['total_ir']:,} | {d['ir_per_request']:,} | {d['idle_share_est_pct']:.2f} % | "
                   f"{d['seconds']:.1f} |")
    out += ["", "Exclusive Ir by library, share of the process's total:", "",
            "| process | scenario | " + " | ".join(g for g, _ in GROUPS) + " | (malloc in libc) | other |",
            "|---|---|" + "--:|" * (len(GROUPS) + 2)]
    for d in rows:
        total = d["total_ir"]
        cells, used = [], 0
        for _, prefixes in GROUPS:
            v = sum(val for o, val in d["objects"].items() if o.startswith(prefixes))
            used += v
            cells.append(f"{pct(v, total):.1f} %")
        cells.append(f"{pct(d['libc_malloc_ir'], total):.1f} %")
        cells.append(f"{pct(total - used, total):.1f} %")
        out.append(f"| {d['process']} | {d['scenario']} | " + " | ".join(cells) + " |")
    out += ["", "Per scenario: `<process>/<scenario>.inclusive.txt`, `.exclusive.txt` "
            "(callgrind_annotate), `.objects.txt`, `.json`, and the dump `callgrind.out.<scenario>`."]
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "scenario" and len(argv) == 7:
        return cmd_scenario(*argv[2:])
    if len(argv) == 3 and argv[1] == "summary":
        return cmd_summary(argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
