#!/usr/bin/env python3
"""HTTP probes for scripts/image/test-image.sh (stdlib only, loopback only).

  probe.py free-ports N
      print N free TCP ports on 127.0.0.1, one a line
  probe.py get URL [--status N] [--contains TEXT]... [--json-row CORPUS=COUNT]
      one GET; fails unless the status (default 200) and content match
  probe.py wait URL [--status N] [--timeout S]
      poll URL until it answers with the status (default 200)
  probe.py stays URL --status N --for S
      poll URL for S seconds; fails if it ever answers anything else
  probe.py startup --runs N --admin-port P -- CMD...
      start CMD N times; for each run measure spawn -> first 200 on
      /readyz (polled every 1 ms) and, after 1 s idle, VmRSS of the process;
      SIGTERM it and require exit 0. Prints JSON figures.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request


# Loopback only: never route through an http_proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url, timeout=2.0):
    """Return (status, body) for a GET; (0, error text) if no HTTP answer."""
    try:
        with OPENER.open(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as err:
        return 0, str(err)


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def cmd_get(args):
    status, body = fetch(args.url, timeout=5.0)
    problems = []
    if status != args.status:
        problems.append(f"status {status}, want {args.status}")
    for text in args.contains or []:
        if text not in body:
            problems.append(f"body lacks {text!r}")
    for spec in args.json_row or []:
        corpus, _, count = spec.partition("=")
        try:
            rows = json.loads(body).get("rows", [])
        except (ValueError, AttributeError):
            rows = None
        if rows is None:
            problems.append("body is not a JSON object with rows")
        elif not any(r.get("corpus") == corpus and str(r.get("total_words")) == count for r in rows):
            problems.append(f"no row corpus={corpus} total_words={count}")
    if problems:
        print(f"probe: GET {args.url}: {'; '.join(problems)}\n  body: {body[:400]}", file=sys.stderr)
        return 1
    print(f"probe: GET {args.url} -> {status} ok")
    return 0


def cmd_wait(args):
    deadline = time.monotonic() + args.timeout
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = fetch(args.url, timeout=1.0)
        if status == args.status:
            return 0
        time.sleep(0.05)
    print(f"probe: {args.url} did not answer {args.status} within {args.timeout} s "
          f"(last: {status} {body[:200]})", file=sys.stderr)
    return 1


def cmd_stays(args):
    deadline = time.monotonic() + args.duration
    polls = 0
    while time.monotonic() < deadline:
        status, body = fetch(args.url, timeout=1.0)
        polls += 1
        if status != args.status:
            print(f"probe: {args.url} answered {status}, want {args.status} throughout "
                  f"({body[:200]})", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"probe: {args.url} answered {args.status} for {args.duration} s ({polls} polls)")
    return 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def one_startup(cmd, admin_port, idle):
    url = f"http://127.0.0.1:{admin_port}/readyz"
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ready_ms = None
        while time.monotonic() - t0 < 10:
            if proc.poll() is not None:
                raise RuntimeError(f"exited {proc.returncode} before ready: "
                                   f"{proc.stderr.read().decode(errors='replace')[:400]}")
            status, _ = fetch(url, timeout=0.5)
            if status == 200:
                ready_ms = (time.monotonic() - t0) * 1000
                break
            time.sleep(0.001)
        if ready_ms is None:
            raise RuntimeError("not ready within 10 s")
        time.sleep(idle)
        rss = rss_kib(proc.pid)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        if code != 0:
            raise RuntimeError(f"SIGTERM -> exit {code}, want 0")
        return ready_ms, rss
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def cmd_startup(args):
    ready, rss = [], []
    for _ in range(args.runs):
        r, m = one_startup(args.cmd, args.admin_port, args.idle)
        ready.append(r)
        rss.append(m)
    print(json.dumps({
        "runs": args.runs,
        "start_to_ready_ms_median": round(statistics.median(ready), 1),
        "start_to_ready_ms_max": round(max(ready), 1),
        "idle_rss_kib_median": int(statistics.median(rss)),
        "idle_rss_kib_max": max(rss),
    }))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd_name", required=True)

    s = sub.add_parser("free-ports")
    s.add_argument("n", type=int)

    s = sub.add_parser("get")
    s.add_argument("url")
    s.add_argument("--status", type=int, default=200)
    s.add_argument("--contains", action="append")
    s.add_argument("--json-row", action="append")

    s = sub.add_parser("wait")
    s.add_argument("url")
    s.add_argument("--status", type=int, default=200)
    s.add_argument("--timeout", type=float, default=10)

    s = sub.add_parser("stays")
    s.add_argument("url")
    s.add_argument("--status", type=int, required=True)
    s.add_argument("--for", dest="duration", type=float, required=True)

    s = sub.add_parser("startup")
    s.add_argument("--runs", type=int, default=5)
    s.add_argument("--admin-port", type=int, required=True)
    s.add_argument("--idle", type=float, default=1.0)
    s.add_argument("cmd", nargs="+")

    args = p.parse_args()
    if args.cmd_name == "free-ports":
        print("\n".join(map(str, free_ports(args.n))))
        return 0
    try:
        return {"get": cmd_get, "wait": cmd_wait, "stays": cmd_stays, "startup": cmd_startup}[args.cmd_name](args)
    except RuntimeError as err:
        print(f"probe: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
