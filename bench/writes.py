#!/usr/bin/env python3
"""Entity writes under load, for bench/load.py.

- A writer process (`python3 bench/writes.py writer --port P --rate 100`):
  PUT /v1/entities of one new Account per write, at a fixed rate, in an
  organization no benchmark request names (UNREAD_ORG), so that no cached
  decision read what it writes. It prints one JSON line of statistics when
  it gets SIGTERM.
- The freshness check: while wrk hammers a few requests, a client flips
  entities those requests read (a user's memberships, its `active` flag),
  asks after each write, and counts answers that do not reflect the write.
"""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CLIENT_CPU, ROOT, TOKEN, iter_entities, pid_ticks  # noqa: E402

UNREAD_ORG = "zz-bench-writes"
MODULES = ["organization", "accounts", "transactions", "generators", "uploadGenerations", "billing", "programs"]


def unread_org_entities():
    """The organization the writer's accounts belong to, with its groups
    (written once, before any measured run)."""
    perms = {}
    groups = []
    for m in MODULES:
        for level in ("read", "manage"):
            gid = f"{UNREAD_ORG}/{m}/{level}"
            perms[m + level.capitalize()] = {"__entity": {"type": "Group", "id": gid}}
            parent = ({"type": "Organization", "id": UNREAD_ORG} if level == "read"
                      else {"type": "Group", "id": f"{UNREAD_ORG}/{m}/read"})
            groups.append({"uid": {"type": "Group", "id": gid}, "attrs": {}, "parents": [parent]})
    org = {"uid": {"type": "Organization", "id": UNREAD_ORG},
           "attrs": {"name": "written under load", "suspended": False, "perms": perms}, "parents": []}
    return [org] + groups


class Client:
    """A keep-alive HTTP client with the bearer token."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body):
        data = json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, data, headers)
                r = self.conn.getresponse()
                text = r.read()
                return r.status, (json.loads(text) if text else None)
            except (http.client.HTTPException, ConnectionError):
                # A keep-alive connection the server closed: reconnect once.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise


def writer_main(args):
    """Writes until SIGTERM at `rate` writes per second (no bursts to catch
    up: a late write is counted, the schedule moves on)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    client = Client(args.port)
    interval = 1.0 / args.rate
    n, failed, late, latencies = 0, 0, 0, []
    started = time.monotonic()
    next_at = started
    announced = False
    while not stop:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
            continue
        if now - next_at > interval:
            late += 1
            next_at = now
        next_at += interval
        aid = f"{args.prefix}-{n:07d}"
        body = [{"uid": {"type": "Account", "id": aid},
                 "attrs": {"org": {"__entity": {"type": "Organization", "id": UNREAD_ORG}},
                           "accountType": "active", "name": aid},
                 "parents": [{"type": "Organization", "id": UNREAD_ORG}]}]
        t = time.monotonic()
        try:
            status, _ = client.call("PUT", "/v1/entities", body)
            failed += status != 200
        except Exception:
            failed += 1
        latencies.append(time.monotonic() - t)
        n += 1
        if not announced:
            print("ready", flush=True)
            announced = True
    elapsed = time.monotonic() - started
    latencies.sort()
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2) if latencies else None
    print(json.dumps({"writes": n, "failed": failed, "late": late, "seconds": round(elapsed, 2),
                      "rate": round(n / elapsed, 1) if elapsed else 0.0,
                      "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": pick(1.0)}), flush=True)


class Writer:
    """Context manager: the writer process, pinned to the client CPU, for the
    duration of one run."""
    runs = 0

    def __init__(self, server, rate):
        self.server, self.rate = server, rate
        self.result = None

    def __enter__(self):
        Writer.runs += 1
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(CLIENT_CPU), sys.executable, os.path.abspath(__file__), "writer",
             "--port", str(self.server.port), "--rate", str(self.rate),
             "--prefix", f"w{os.getpid()}-{Writer.runs}"],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"writer did not start: {line!r}")
        return self

    def cpu_ticks(self):
        return pid_ticks(self.proc.pid)

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        self.result = json.loads(out.strip().splitlines()[-1])

    def stats(self):
        return self.result


# ---------------------------------------------------------------- freshness

def pick_candidates(wl, bodies_path, server, count=16, scan=2000):
    """Requests allowed now whose principal is an organization member (not
    platform support): removing every membership of the user, or marking it
    inactive, must turn each of them into a deny. One request per user."""
    bodies = []
    with open(bodies_path) as f:
        for line in f:
            bodies.append(json.loads(line))
            if len(bodies) >= scan:
                break
    users = {}
    wanted = {b["principal"]["id"] for b in bodies if b["principal"]["type"] == "User"}
    for e in iter_entities(os.path.join(wl, "entities.json")):
        if e["uid"]["type"] == "User" and e["uid"]["id"] in wanted:
            users[e["uid"]["id"]] = e
    client = Client(server.port)
    out, seen = [], set()
    for body in bodies:
        user = users.get(body["principal"]["id"])
        if user is None or user["uid"]["id"] in seen or not user["parents"] or not user["attrs"].get("active"):
            continue
        if any(p["id"] == "platformSupport" for p in user["parents"]):
            continue
        status, answer = client.call("POST", "/v1/is_authorized", body)
        if status == 200 and answer["decision"] == "allow":
            out.append((body, user))
            seen.add(user["uid"]["id"])
            if len(out) >= count:
                break
    return out


def freshness(server, wl, bodies_path, seconds, tmp):
    """Flips entities the requests read while wrk sends the same requests
    (so their decisions are cached and recomputed concurrently); after each
    write's answer, asks twice (a fresh computation, then possibly a cache
    hit) and checks the decision. Every state is restored at the end."""
    candidates = pick_candidates(wl, bodies_path, server)
    if not candidates:
        return {"error": "no allowed member request found to flip"}
    hot = os.path.join(tmp, "fresh-bodies.jsonl")
    with open(hot, "w") as f:
        for body, _ in candidates:
            f.write(json.dumps(body, separators=(",", ":")) + "\n")
    env = dict(os.environ, WRK_BODIES=hot, WRK_PATH="/v1/is_authorized", WRK_TOKEN=TOKEN)
    load = subprocess.Popen(["taskset", "-c", str(CLIENT_CPU), "wrk", "-t", "2", "-c", "16", "-d", f"{seconds + 2}s",
                             "--latency", "-s", os.path.join(ROOT, "bench", "wrk_bodies.lua"),
                             f"http://127.0.0.1:{server.port}/v1/is_authorized"],
                            env=env, stdout=subprocess.PIPE, text=True)
    client = Client(server.port)
    kinds = ["revoke memberships", "deactivate"]
    checks, stale, behind, cached, writes, examples = 0, 0, 0, 0, 0, []
    by_kind = {k: {"writes": 0, "stale": 0} for k in kinds + ["restore"]}
    time.sleep(1)  # wrk has filled the cache with the current decisions
    deadline = time.monotonic() + seconds
    i = 0
    try:
        while time.monotonic() < deadline:
            body, user = candidates[i % len(candidates)]
            kind = kinds[(i // len(candidates)) % len(kinds)]
            i += 1
            changed = dict(user, parents=[]) if kind == "revoke memberships" else \
                dict(user, attrs=dict(user["attrs"], active=False))
            for state, entity, expected in ((kind, changed, "deny"), ("restore", user, "allow")):
                status, written = client.call("PUT", "/v1/entities", [entity])
                if status != 200:
                    raise RuntimeError(f"write refused: {status} {written}")
                writes += 1
                by_kind[state]["writes"] += 1
                for ask in range(2):
                    status, answer = client.call("POST", "/v1/is_authorized", body)
                    checks += 1
                    cached += status == 200 and answer.get("cached", False)
                    if status == 200 and answer["store_revision"] < written["revision"]:
                        behind += 1
                    if status != 200 or answer["decision"] != expected:
                        stale += 1
                        by_kind[state]["stale"] += 1
                        if len(examples) < 5:
                            examples.append({"state": state, "ask": ask, "expected": expected, "status": status,
                                             "answer": answer, "write_revision": written["revision"],
                                             "request": body})
    finally:
        for _, user in candidates:
            client.call("PUT", "/v1/entities", [user])
        out, _ = load.communicate(timeout=seconds + 60)
    background = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return {"requests_flipped": len(candidates), "writes": writes, "checks": checks, "stale": stale,
            "answers_behind_the_write_revision": behind, "answers_from_the_cache": cached,
            "by_kind": by_kind, "stale_examples": examples, "seconds": seconds,
            "concurrent_wrk": {k: background.get(k) for k in ("requests", "non2xx", "socket_errors")}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    w = sub.add_parser("writer", help="write new accounts of the unread organization until SIGTERM")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--rate", type=float, default=100.0, help="writes per second")
    w.add_argument("--prefix", default=f"w{os.getpid()}", help="account id prefix (each write a new account)")
    args = ap.parse_args()
    writer_main(args)


if __name__ == "__main__":
    main()
