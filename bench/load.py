#!/usr/bin/env python3
"""HTTP load harness: cedargate beside the ceiling server, on the standard workload.

One command reproduces the README table:

    python3 bench/load.py                 # 13k entities, 10 s per run, 2 runs per figure
    python3 bench/load.py --sizes 1k,13k,130k,1m --duration 10

It installs wrk (Debian) if missing, builds the release binaries, generates the
workload with bench/workload/gen_workload.py, renders request bodies with
render_bodies.py, and then for each scenario starts the server pinned to CPU 0
(one tokio worker) with wrk pinned to CPU 1, records req/s, p50/p99/p99.9,
server CPU per request (from /proc/<pid>/stat) and peak RSS (VmHWM), and prints
every cedargate figure beside the ceiling's as a ratio. Results go to
bench/results/load-<UTC time>.json. All traffic stays on 127.0.0.1.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOAD = os.path.join(ROOT, "bench", "workload")
SIZES = {
    "1k": ["--users", "100", "--orgs", "10", "--accounts", "800", "--generators", "50"],
    "13k": [],
    "130k": ["--users", "10000", "--orgs", "1000", "--accounts", "100000", "--generators", "5000"],
    "1m": ["--users", "80000", "--orgs", "7700", "--accounts", "770000", "--generators", "38500"],
}
TICKS = os.sysconf("SC_CLK_TCK")
# Distinct single-request bodies wrk rotates through (the first requests of
# requests.jsonl); the in-process baseline decides the same ones.
REQUEST_BODIES = 20000
# CPU burnt per request by the "ceiling with work" run: about a cache-off
# decision, so that its HTTP cost is measured at a comparable request rate.
CEILING_WORK_US = 20


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_wrk():
    if shutil.which("wrk"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    sh(*sudo, "apt-get", "update", "-qq")
    sh(*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "wrk")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workload(size):
    out = os.path.join(ROOT, "target", "bench-workload", size)
    if not os.path.isfile(os.path.join(out, "requests.jsonl")):
        sh(sys.executable, os.path.join(WORKLOAD, "gen_workload.py"), *SIZES[size], "--out", out,
           stdout=subprocess.DEVNULL)
    bodies = {
        "native": ["--shape", "uid-objects"],
        "authzen": ["--shape", "authzen"],
        "authzen_batch100": ["--shape", "authzen", "--batch", "100"],
    }
    for name, args in bodies.items():
        path = os.path.join(out, f"bodies.{name}.jsonl")
        if not os.path.isfile(path):
            sh(sys.executable, os.path.join(WORKLOAD, "render_bodies.py"), "--requests",
               os.path.join(out, "requests.jsonl"), *args, "--limit", str(REQUEST_BODIES) if "batch" not in name else "500",
               "--out", path, stderr=subprocess.DEVNULL)
    return out


def baseline(binary, wl, duration, runs):
    """Plain cedar-policy in-process (whole store, whole policy set) on the
    requests the HTTP runs send, pinned to the server's CPU."""
    results = []
    for _ in range(runs):
        out = subprocess.run(["taskset", "-c", "0", binary, WORKLOAD, wl, str(REQUEST_BODIES), str(duration)],
                             check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    mean = lambda k: sum(r[k] for r in results) / len(results)
    return {"runs": results, "rate": mean("rate"), "us_per_decision": mean("us_per_decision")}


class Server:
    """A server process pinned to CPU 0 with one tokio worker."""

    def __init__(self, argv, port, token=None, env=None):
        env = dict(os.environ, TOKIO_WORKER_THREADS="1", CEDARGATE_LOG="warn", **(env or {}))
        self.port, self.token = port, token
        started = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", "0", *argv], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait_ready()
        self.startup_s = time.monotonic() - started

    def wait_ready(self, timeout=600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + self.proc.stderr.read().decode()[-2000:])
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
                return
            except urllib.error.HTTPError:
                # Any HTTP answer means it listens (the ceiling has no /readyz).
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("server not ready in time")

    def cpu_ticks(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def post(self, path, body=b""):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        return urllib.request.urlopen(req, timeout=60).status

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wrk(server, bodies, path, connections, duration):
    env = dict(os.environ, WRK_BODIES=bodies, WRK_PATH=path)
    if server.token:
        env["WRK_TOKEN"] = server.token
    threads = str(min(connections, 2))
    before = server.cpu_ticks()
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t", threads, "-c", str(connections), "-d", f"{duration}s",
                          "--latency", "-s", os.path.join(ROOT, "bench", "wrk_bodies.lua"),
                          f"http://127.0.0.1:{server.port}{path}"],
                         env=env, check=True, capture_output=True, text=True).stdout
    cpu_s = (server.cpu_ticks() - before) / TICKS
    result = json.loads(out.strip().splitlines()[-1])
    secs = result["duration_us"] / 1e6
    result.update(rps=result["requests"] / secs, cpu_us_per_req=cpu_s * 1e6 / max(result["requests"], 1))
    return result


def measure(server, bodies, path, connections, duration, runs):
    results = [wrk(server, bodies, path, connections, duration) for _ in range(runs)]
    mean = lambda k: sum(r[k] for r in results) / len(results)
    return {"runs": results, "rps": mean("rps"), "p50_us": mean("p50_us"), "p99_us": mean("p99_us"),
            "p999_us": mean("p999_us"), "cpu_us_per_req": mean("cpu_us_per_req"),
            "non2xx": sum(r["non2xx"] for r in results), "socket_errors": sum(r["socket_errors"] for r in results)}


def cedargate(binary, wl, port, tmp, cache, size, entities_loaded):
    db = os.path.join(ROOT, "target", "bench-workload", size, "http-store.db")
    argv = [binary, "serve", "--bind", f"127.0.0.1:{port}", "--database-url", f"sqlite://{db}",
            "--policies", os.path.join(WORKLOAD, "policies.cedar"),
            "--schema", os.path.join(WORKLOAD, "schema.cedarschema.json"),
            "--api-token", "bench-token", "--watch", "false",
            "--decision-cache-capacity", str(cache), "--mail-url", os.path.join(tmp, "mail")]
    server = Server(argv, port, "bench-token")
    if not entities_loaded:
        fill(server, wl)
    return server


def fill(server, wl, chunk=5000):
    """Loads entities.json through PUT /v1/entities, in chunks."""
    with open(os.path.join(wl, "entities.json")) as f:
        entities = json.load(f)
    for i in range(0, len(entities), chunk):
        body = json.dumps(entities[i:i + chunk]).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/entities", data=body, method="PUT",
                                     headers={"Authorization": "Bearer bench-token", "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=600)


def warm(server, bodies, path, duration=3):
    wrk(server, bodies, path, 16, duration)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="13k", help="comma list of 1k, 13k, 130k, 1m")
    ap.add_argument("--duration", type=int, default=10, help="seconds per run")
    ap.add_argument("--runs", type=int, default=2, help="runs per figure (at least 2)")
    ap.add_argument("--scale", help="comma list of sizes: only start-up, RSS and latency at c=16 per store size")
    ap.add_argument("--warmup", type=int, default=30,
                    help="--scale: seconds of load before measuring, enough for every distinct request to have "
                         "been read from the store once (first reads of a 1M store are ~2.5 ms each)")
    args = ap.parse_args()
    ensure_wrk()
    sh("cargo", "build", "--release", "--quiet", "--bin", "cedargate", "--example", "ceiling",
       "--example", "baseline", cwd=ROOT)
    binary = os.path.join(ROOT, "target", "release", "cedargate")
    ceiling_bin = os.path.join(ROOT, "target", "release", "examples", "ceiling")
    baseline_bin = os.path.join(ROOT, "target", "release", "examples", "baseline")
    runs = max(args.runs, 2)
    d = args.duration
    report = {"machine": {"cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
              "command": " ".join(sys.argv), "duration_s": d, "runs": runs, "sizes": {}}
    tmp = tempfile.mkdtemp(prefix="cedargate-bench-")
    if args.scale:
        report["scale"] = scale(binary, args.scale.split(","), tmp, d, runs, args.warmup)
        write_report(report, "scale")
        shutil.rmtree(tmp, ignore_errors=True)
        return
    for size in args.sizes.split(","):
        wl = workload(size)
        b = lambda name: os.path.join(wl, f"bodies.{name}.jsonl")
        db = os.path.join(wl, "http-store.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        rows = {}
        port = free_port()
        ceiling = Server([ceiling_bin, f"127.0.0.1:{port}"], port)
        for c in (1, 16, 64):
            rows[f"ceiling native c={c}"] = measure(ceiling, b("native"), "/v1/is_authorized", c, d, runs)
        rows["ceiling authzen c=16"] = measure(ceiling, b("authzen"), "/access/v1/evaluation", 16, d, runs)
        rows["ceiling authzen batch100 c=16"] = measure(ceiling, b("authzen_batch100"), "/access/v1/evaluations", 16, d, runs)
        rows["ceiling peak RSS MB"] = ceiling.peak_rss_mb()
        ceiling.stop()
        port = free_port()
        ceiling = Server([ceiling_bin, f"127.0.0.1:{port}"], port, env={"CEILING_WORK_US": str(CEILING_WORK_US)})
        rows[f"ceiling with {CEILING_WORK_US} us work native c=16"] = measure(
            ceiling, b("native"), "/v1/is_authorized", 16, d, runs)
        ceiling.stop()
        report["sizes"].setdefault(size, {})["baseline"] = base = baseline(baseline_bin, wl, d, runs)

        # Decision cache on, warmed.
        port = free_port()
        server = cedargate(binary, wl, port, tmp, 1_000_000, size, False)
        startup = {"fill_then_ready_s": server.startup_s}
        warm(server, b("native"), "/v1/is_authorized")
        for c in (1, 16, 64):
            rows[f"cedargate warm-cache native c={c}"] = measure(server, b("native"), "/v1/is_authorized", c, d, runs)
        warm(server, b("authzen"), "/access/v1/evaluation")
        rows["cedargate warm-cache authzen c=16"] = measure(server, b("authzen"), "/access/v1/evaluation", 16, d, runs)
        rows["cedargate peak RSS MB (warm cache)"] = server.peak_rss_mb()
        server.stop()

        # Decision cache off: every request evaluated; entities from the store.
        port = free_port()
        server = cedargate(binary, wl, port, tmp, 0, size, True)
        startup["restart_ready_s"] = server.startup_s
        warm(server, b("native"), "/v1/is_authorized")
        for c in (1, 16, 64):
            rows[f"cedargate cache-off native c={c}"] = measure(server, b("native"), "/v1/is_authorized", c, d, runs)
        rows["cedargate cache-off authzen c=16"] = measure(server, b("authzen"), "/access/v1/evaluation", 16, d, runs)
        rows["cedargate cache-off authzen batch100 c=16"] = measure(server, b("authzen_batch100"), "/access/v1/evaluations", 16, d, runs)

        # A policy reload every second under load.
        stop = threading.Event()
        reloads = {"ok": 0, "failed": 0}

        def reloader():
            while not stop.wait(1.0):
                try:
                    server.post("/v1/policies/reload")
                    reloads["ok"] += 1
                except Exception:
                    reloads["failed"] += 1
        t = threading.Thread(target=reloader)
        t.start()
        rows["cedargate cache-off native c=16 reload every 1 s"] = measure(server, b("native"), "/v1/is_authorized", 16, d, runs)
        stop.set()
        t.join()
        rows["reloads"] = reloads
        rows["cedargate peak RSS MB (cache off)"] = server.peak_rss_mb()
        server.stop()
        report["sizes"][size].update(startup=startup, results=rows)
        print_table(size, rows, startup, base)
        print_targets(rows, base)

    write_report(report, "load")
    shutil.rmtree(tmp, ignore_errors=True)


def write_report(report, kind):
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(ROOT, "bench", "results", f"{kind}-{stamp}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nresults: {os.path.relpath(path, ROOT)}")


def scale(binary, sizes, tmp, d, runs, warmup):
    """Per store size: fill once through the entity API (kept between runs),
    then restart on the filled store and report time to ready, latency with
    the decision cache off and on at c=16, and peak RSS."""
    out = {}
    print("\n| stored entities | fill s | ready after restart s | cache off req/s | p50 ms | p99 ms | CPU µs/req "
          "| warm cache req/s | p99 ms | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        wl = workload(size)
        with open(os.path.join(wl, "manifest.json")) as f:
            manifest = json.load(f)
        count = manifest["counts"]["total_entities"]
        db = os.path.join(wl, "http-store.db")
        filled = os.path.join(wl, "http-store.filled")
        fill_s = None
        if not os.path.isfile(filled):
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(db + suffix):
                    os.remove(db + suffix)
            port = free_port()
            server = cedargate(binary, wl, port, tmp, 0, size, True)
            started = time.monotonic()
            fill(server, wl)
            fill_s = time.monotonic() - started
            server.stop()
            open(filled, "w").close()
        row = {"entities": count, "fill_s": fill_s}
        for cache, key in ((0, "cache_off"), (1_000_000, "warm_cache")):
            port = free_port()
            server = cedargate(binary, wl, port, tmp, cache, size, True)
            row.setdefault("ready_s", server.startup_s)
            warm(server, os.path.join(wl, "bodies.native.jsonl"), "/v1/is_authorized", duration=warmup)
            row[key] = measure(server, os.path.join(wl, "bodies.native.jsonl"), "/v1/is_authorized", 16, d, runs)
            row[f"peak_rss_mb_{key}"] = server.peak_rss_mb()
            server.stop()
        out[size] = row
        off, on = row["cache_off"], row["warm_cache"]
        fill_text = f"{fill_s:.0f}" if fill_s is not None else "(kept)"
        print(f"| {count:,} | {fill_text} | {row['ready_s']:.2f} | {off['rps']:.0f} | {off['p50_us'] / 1000:.2f} | "
              f"{off['p99_us'] / 1000:.2f} | {off['cpu_us_per_req']:.1f} | {on['rps']:.0f} | {on['p99_us'] / 1000:.2f} | "
              f"{max(row['peak_rss_mb_cache_off'], row['peak_rss_mb_warm_cache']):.0f} |")
    return out


def print_table(size, rows, startup, base):
    print(f"\n## {size} entities (startup: {startup})\n")
    print(f"In-process baseline (plain cedar-policy, whole store, whole policy set, same {REQUEST_BODIES} requests): "
          f"{base['rate']:.0f} decisions/s, {base['us_per_decision']:.1f} µs each\n")
    print("| scenario | req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | non-2xx | vs ceiling | vs in-process baseline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if not isinstance(r, dict) or "rps" not in r:
            continue
        ratio = ""
        if name.startswith("cedargate"):
            kind = "authzen batch100" if "batch100" in name else ("authzen" if "authzen" in name else "native")
            c = name.split("c=")[1].split()[0] if "c=" in name else "16"
            ref = rows.get(f"ceiling {kind} c={c}")
            if ref:
                ratio = f"{r['rps'] / ref['rps']:.2f}x"
        vs_base = ""
        if "cache-off" in name:
            per_request = 100 if "batch100" in name else 1
            vs_base = f"{r['rps'] * per_request / base['rate']:.2f}x"
        print(f"| {name} | {r['rps']:.0f} | {r['p50_us'] / 1000:.3f} | {r['p99_us'] / 1000:.3f} | "
              f"{r['p999_us'] / 1000:.3f} | {r['cpu_us_per_req']:.1f} | {r['non2xx']} | {ratio} | {vs_base} |")


def print_targets(rows, base):
    """The issue's targets, each as measured in this run."""
    g = lambda name: rows.get(name, {})
    ratio = lambda a, b: g(a).get("rps", 0) / max(g(b).get("rps", 1), 1e-9)
    single = g("cedargate cache-off authzen c=16").get("cpu_us_per_req", 0)
    batch = g("cedargate cache-off authzen batch100 c=16").get("cpu_us_per_req", 0) / 100
    steady = g("cedargate cache-off native c=16").get("p99_us", 0)
    reload = g("cedargate cache-off native c=16 reload every 1 s")
    print("\n| target | measured |")
    print("|---|---|")
    for c in (16, 64):
        print(f"| warm cache >= 0.8x ceiling, c={c} | {ratio(f'cedargate warm-cache native c={c}', f'ceiling native c={c}'):.2f}x |")
    print(f"| warm cache p99 <= 1 ms, c=16 | {g('cedargate warm-cache native c=16').get('p99_us', 0) / 1000:.2f} ms |")
    print(f"| cache off >= 1.0x in-process baseline, c=16 | {g('cedargate cache-off native c=16').get('rps', 0) / base['rate']:.2f}x |")
    print(f"| batch of 100: CPU per decision <= 0.5x single | {batch / max(single, 1e-9):.2f}x ({batch:.1f} vs {single:.1f} µs) |")
    print(f"| reload every 1 s: 0 failed, p99 <= 2x steady | {reload.get('non2xx', 0) + reload.get('socket_errors', 0)} failed, "
          f"p99 {reload.get('p99_us', 0) / max(steady, 1e-9):.2f}x |")


if __name__ == "__main__":
    main()
