#!/usr/bin/env python3
"""HTTP load harness: cedargate beside the ceiling server, on the standard workload.

    python3 bench/load.py --sizes 13k --duration 10 --runs 3     # the README table
    python3 bench/load.py --scale 1k,13k,130k,1m --duration 10   # per store size

It installs wrk (Debian) if missing, builds the release binaries (in
$CARGO_TARGET_DIR, default target/), generates the workload with
bench/workload/gen_workload.py and renders request bodies with
render_bodies.py. Every server runs pinned to CPU 0 with one tokio worker,
wrk and the harness's own clients on CPU 1. All servers of a comparison are
started together, and each comparison's runs are interleaved (A, B, C, A, B,
C, ...; at least 3 rounds), so that a change in the machine's state hits
every server alike. Each figure is the median of its runs, printed with its
range and spread; each ratio is computed from the medians (with the range of
the ratios of runs of the same round).

Around every run the harness reads /proc/stat: the hypervisor's steal time on
the server's and the client's CPU, as a share of the run's CPU time, and the
CPU other processes of this shared machine used; a run with more steal than
--max-steal (and, if given, more other load on CPU 0 than --max-other) is
discarded and repeated, at most --retries times. Kept and discarded runs are
all in the report.

Beyond the steady scenarios, it runs a warm cache with a writer doing
--write-rate entity writes per second to entities no request reads,
interleaved with the same load without writes, and a freshness check: while
wrk sends a few requests, a client flips the entities those requests read
and checks every answer after each write. Results go to
bench/results/{load,scale}-<UTC time>.json. All traffic stays on 127.0.0.1.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import writes  # noqa: E402
from harness import (CLIENT_CPU, ROOT, SERVER_CPU, TOKEN, WORKLOAD, Baseline, Load, Policy, Server,  # noqa: E402
                     fill, free_port, interleave, throughput, wrk)

SIZES = {
    "1k": ["--users", "100", "--orgs", "10", "--accounts", "800", "--generators", "50"],
    "13k": [],
    "130k": ["--users", "10000", "--orgs", "1000", "--accounts", "100000", "--generators", "5000"],
    "1m": ["--users", "80000", "--orgs", "7700", "--accounts", "770000", "--generators", "38500"],
    # 10 x 1m: 10,040,038 entities. gen_workload.py streams entities.json
    # and draws organizations in O(log orgs) (it held ~25 GB and took ~4 h
    # here before); filling through the API takes ~74 s per million.
    "10m": ["--users", "800000", "--orgs", "77000", "--accounts", "7700000", "--generators", "385000"],
}
# Distinct single-request bodies wrk rotates through (the first requests of
# requests.jsonl); the in-process baseline decides the same ones.
REQUEST_BODIES = 20000
# CPU burnt per request by the "ceiling with work" run: about a cache-off
# decision, so that its HTTP cost is measured at a comparable request rate.
CEILING_WORK_US = 20
# The in-process baseline holds the whole store in one Entities (3.65 GiB at
# 1M entities): not attempted above this many.
BASELINE_MAX_ENTITIES = 2_000_000
# A warm cache must stay warm across interleaved runs: the default TTL (60 s,
# counted from insertion) would expire it in the middle of the comparison.
WARM_TTL_SECS = 86400
NATIVE, EVALUATION, EVALUATIONS = "/v1/is_authorized", "/access/v1/evaluation", "/access/v1/evaluations"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_wrk():
    if shutil.which("wrk"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    sh(*sudo, "apt-get", "update", "-qq")
    sh(*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "wrk")


def build(skip=False):
    """The release binaries, built once, in $CARGO_TARGET_DIR if set."""
    if not skip:
        sh("cargo", "build", "--release", "--quiet", "--bin", "cedargate", "--example", "ceiling",
           "--example", "baseline", cwd=ROOT)
    target = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target"), "release")
    return {"cedargate": os.path.join(target, "cedargate"),
            "ceiling": os.path.join(target, "examples", "ceiling"),
            "baseline": os.path.join(target, "examples", "baseline")}


def workload(size):
    out = os.path.join(ROOT, "target", "bench-workload", size)
    if not os.path.isfile(os.path.join(out, "requests.jsonl")):
        started = time.monotonic()
        sh(sys.executable, os.path.join(WORKLOAD, "gen_workload.py"), *SIZES[size], "--out", out,
           stdout=subprocess.DEVNULL)
        log(f"generated the {size} workload in {time.monotonic() - started:.0f} s")
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


def entity_count(wl):
    with open(os.path.join(wl, "manifest.json")) as f:
        return json.load(f)["counts"]["total_entities"]


def remove_db(db):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)


def cedargate(binary, db, tmp, cache, name):
    port = free_port()
    argv = [binary, "serve", "--bind", f"127.0.0.1:{port}", "--database-url", f"sqlite://{db}",
            "--policies", os.path.join(WORKLOAD, "policies.cedar"),
            "--schema", os.path.join(WORKLOAD, "schema.cedarschema.json"),
            "--api-token", TOKEN, "--watch", "false",
            "--decision-cache-capacity", str(cache), "--decision-cache-ttl-secs", str(WARM_TTL_SECS),
            "--mail-url", os.path.join(tmp, f"mail-{port}")]
    return running(Server(argv, port, TOKEN, name=name))


def ceiling(binary, work_us=0):
    port = free_port()
    return running(Server([binary, f"127.0.0.1:{port}"], port, env={"CEILING_WORK_US": str(work_us)},
                          name=f"ceiling{'+work' if work_us else ''}"))


RUNNING = []


def running(server):
    """Remembers a started server, so that an interrupted run stops it."""
    RUNNING.append(server)
    return server


def warm(server, bodies, path, duration=3):
    wrk(server, bodies, path, 16, duration)


class Reloader:
    """Context manager: POST /v1/policies/reload every second during a run."""

    def __init__(self, server):
        self.server, self.ok, self.failed = server, 0, 0

    def __enter__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop)
        self.thread.start()
        return self

    def loop(self):
        while not self.stop.wait(1.0):
            try:
                self.server.post("/v1/policies/reload")
                self.ok += 1
            except Exception:
                self.failed += 1

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def stats(self):
        return {"reloads_ok": self.ok, "reloads_failed": self.failed}


def load_size(size, bins, tmp, d, policy, write_rate):
    """Every steady scenario of one store size, then the write scenario and
    the freshness check. Returns the report entry of the size."""
    wl = workload(size)
    b = lambda name: os.path.join(wl, f"bodies.{name}.jsonl")
    # Its own database file: the write scenario adds entities, and --scale
    # keeps http-store.db filled between invocations.
    db = os.path.join(wl, "load-store.db")
    remove_db(db)
    ceil, work = ceiling(bins["ceiling"]), ceiling(bins["ceiling"], CEILING_WORK_US)
    on = cedargate(bins["cedargate"], db, tmp, 1_000_000, "cedargate warm cache")
    started = time.monotonic()
    fill(on, wl)
    startup = {"ready_s": on.startup_s, "fill_s": time.monotonic() - started}
    off = cedargate(bins["cedargate"], db, tmp, 0, "cedargate cache off")
    startup["restart_ready_s"] = off.startup_s
    for server, bodies, path in ((on, "native", NATIVE), (on, "authzen", EVALUATION), (off, "native", NATIVE),
                                 (ceil, "native", NATIVE), (work, "native", NATIVE)):
        warm(server, b(bodies), path)

    def trio(shape, path, c, bodies=None):
        ref = f"ceiling {shape} c={c}"
        return [Load(ref, ceil, b(bodies or shape), path, c),
                Load(f"cedargate warm-cache {shape} c={c}", on, b(bodies or shape), path, c, ref=ref),
                Load(f"cedargate cache-off {shape} c={c}", off, b(bodies or shape), path, c, ref=ref, vs_baseline=True)]

    c16 = trio("native", NATIVE, 16)
    c16.insert(1, Load(f"ceiling with {CEILING_WORK_US} us work native c=16", work, b("native"), NATIVE, 16))
    c16.append(Load("cedargate cache-off native c=16 reload every 1 s", off, b("native"), NATIVE, 16,
                    ref="ceiling native c=16", vs_baseline=True, background=lambda: Reloader(off)))
    if entity_count(wl) <= BASELINE_MAX_ENTITIES:
        c16.append(Baseline("in-process baseline", bins["baseline"], wl, REQUEST_BODIES))
    batch_ref = "ceiling authzen batch100 c=16"
    groups = [
        ("native c=1", trio("native", NATIVE, 1)),
        ("native c=16", c16),
        ("native c=64", trio("native", NATIVE, 64)),
        ("authzen c=16", trio("authzen", EVALUATION, 16)),
        ("authzen batch of 100 c=16", [
            Load(batch_ref, ceil, b("authzen_batch100"), EVALUATIONS, 16),
            Load("cedargate cache-off authzen batch100 c=16", off, b("authzen_batch100"), EVALUATIONS, 16,
                 ref=batch_ref, per_request=100, vs_baseline=True)]),
    ]
    rows, orders, warnings = {}, {}, []
    for group, loads in groups:
        log(f"\n{size}: {group}: {', '.join(l.name for l in loads)}")
        figures = interleave(group, loads, d, policy, log)
        orders[group] = figures.pop("_order")
        warnings.append(figures.pop("_warning"))
        rows.update(figures)
    peak = {s.name: s.peak_rss_mb() for s in (ceil, work, off)}
    for s in (ceil, work, off):
        s.stop()

    # Writes under load: only the warm server runs now (another cedargate on
    # the same database would replay the writes from the change log on CPU 0).
    on.request("PUT", "/v1/entities", writes.unread_org_entities())
    warm(on, b("native"), NATIVE)
    quiet = "cedargate warm-cache native c=16, no writes"
    busy = f"cedargate warm-cache native c=16, {write_rate:g} writes/s to entities no request reads"
    log(f"\n{size}: writes: {quiet} / {busy}")
    figures = interleave("writes", [Load(quiet, on, b("native"), NATIVE, 16),
                                    Load(busy, on, b("native"), NATIVE, 16, ref=quiet,
                                         background=lambda: writes.Writer(on, write_rate))], d, policy, log)
    orders["writes"] = figures.pop("_order")
    warnings.append(figures.pop("_warning"))
    rows.update(figures)
    log(f"\n{size}: freshness check ({max(d, 5)} s)")
    fresh = writes.freshness(on, wl, b("native"), max(d, 5), tmp)
    peak[on.name] = on.peak_rss_mb()
    on.stop()
    base = rows.get("in-process baseline")
    entry = {"entities": entity_count(wl), "startup": startup, "results": rows, "interleaving": orders,
             "peak_rss_mb": peak, "freshness": fresh, "warnings": [w for w in warnings if w],
             "writes": {"quiet": quiet, "busy": busy, "rate": write_rate, "target": 0.9,
                        "ratio": rows[busy]["vs_ref"]}}
    print_table(size, rows, startup, base)
    print_writes(entry)
    print_targets(rows, base, entry)
    print_runs(rows)
    print_warnings(entry["warnings"])
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="13k", help=f"comma list of {', '.join(SIZES)}")
    ap.add_argument("--duration", type=int, default=10, help="seconds per run")
    ap.add_argument("--runs", type=int, default=3, help="interleaved rounds per comparison (at least 3)")
    ap.add_argument("--max-steal", type=float, default=2.0,
                    help="percent of steal time on the server's or the client's CPU above which a run is repeated")
    ap.add_argument("--max-other", type=float, default=None,
                    help=f"percent of CPU {SERVER_CPU} used by other processes above which a run is repeated "
                         "(default: recorded only)")
    ap.add_argument("--retries", type=int, default=3, help="repetitions of a disturbed run before it is kept, flagged")
    ap.add_argument("--write-rate", type=float, default=100.0, help="entity writes per second in the write scenario")
    ap.add_argument("--no-build", action="store_true",
                    help="use the release binaries already built in $CARGO_TARGET_DIR (default target/)")
    ap.add_argument("--scale", help="comma list of sizes: only start-up, RSS and latency at c=16 per store size")
    ap.add_argument("--warmup", type=int, default=30,
                    help="--scale: seconds of load before measuring, enough for every distinct request to have "
                         "been read from the store once (first reads of a 1M store are ~2.5 ms each)")
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be at least 3: a median and its spread need three runs")
    for size in (args.scale or args.sizes).split(","):
        if size not in SIZES:
            ap.error(f"unknown size {size!r} (one of {', '.join(SIZES)})")
    ensure_wrk()
    bins = build(args.no_build)
    if os.cpu_count() > max(SERVER_CPU, CLIENT_CPU):
        # The harness's own clients (reloads, writes, freshness) beside wrk.
        os.sched_setaffinity(0, {CLIENT_CPU})
    policy = Policy(args.runs, args.max_steal, args.retries, args.max_other)
    report = {"machine": {"cores": os.cpu_count(),
                          "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
              "command": " ".join(sys.argv), "duration_s": args.duration, "runs": args.runs,
              "max_steal_pct": args.max_steal, "max_other_pct": args.max_other, "retries": args.retries,
              "sizes": {}}
    tmp = tempfile.mkdtemp(prefix="cedargate-bench-")
    try:
        if args.scale:
            report["scale"] = scale(bins, args.scale.split(","), tmp, args.duration, policy, args.warmup)
            write_report(report, "scale")
            return
        for size in args.sizes.split(","):
            report["sizes"][size] = load_size(size, bins, tmp, args.duration, policy, args.write_rate)
        write_report(report, "load")
    finally:
        for server in RUNNING:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def write_report(report, kind):
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(ROOT, "bench", "results", f"{kind}-{stamp}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nresults: {os.path.relpath(path, ROOT)}")


def scale(bins, sizes, tmp, d, policy, warmup):
    """Per store size: fill once through the entity API (kept between
    invocations), then start a cache-off and a warm-cache server on every
    size's filled store, warm each, and interleave the sizes: time to ready,
    latency at c=16 and peak RSS."""
    out, servers = {}, []
    try:
        for size in sizes:
            wl = workload(size)
            db = os.path.join(wl, "http-store.db")
            filled = os.path.join(wl, "http-store.filled")
            fill_s = None
            if not os.path.isfile(filled):
                remove_db(db)
                server = cedargate(bins["cedargate"], db, tmp, 0, f"{size} filler")
                started = time.monotonic()
                fill(server, wl)
                fill_s = time.monotonic() - started
                server.stop()
                open(filled, "w").close()
            off = cedargate(bins["cedargate"], db, tmp, 0, f"{size} cache off")
            on = cedargate(bins["cedargate"], db, tmp, 1_000_000, f"{size} warm cache")
            servers += [off, on]
            out[size] = {"entities": entity_count(wl), "fill_s": fill_s, "ready_s": off.startup_s,
                         "servers": (off, on), "bodies": os.path.join(wl, "bodies.native.jsonl")}
        for size in sizes:
            row = out[size]
            for server in row["servers"]:
                log(f"warming {server.name} for {warmup} s")
                warm(server, row["bodies"], NATIVE, duration=warmup)
        ref = "13k" if "13k" in sizes else sizes[0]
        for key, index in (("cache_off", 0), ("warm_cache", 1)):
            loads = [Load(f"{size} {key}", out[size]["servers"][index], out[size]["bodies"], NATIVE, 16,
                          ref=f"{ref} {key}") for size in sizes]
            log(f"\nscale: {key}: {', '.join(sizes)}")
            figures = interleave(key, loads, d, policy, log)
            order = figures.pop("_order")
            warning = figures.pop("_warning")
            for size in sizes:
                out[size][key] = figures[f"{size} {key}"]
                out[size].setdefault("interleaving", {})[key] = order
                if warning:
                    out[size].setdefault("warnings", []).append(warning)
        for size in sizes:
            off, on = out[size].pop("servers")
            out[size].pop("bodies")
            out[size]["peak_rss_mb_cache_off"] = off.peak_rss_mb()
            out[size]["peak_rss_mb_warm_cache"] = on.peak_rss_mb()
    finally:
        for server in servers:
            server.stop()
    print_scale(out, sizes)
    return out


# ---------------------------------------------------------------- printing

def rng(fig, key, scale=1.0, fmt="{:,.0f}"):
    lo, hi = fig["range"][key]
    return f"{fmt.format(lo / scale)}–{fmt.format(hi / scale)}"


def ratio_text(r):
    if not r:
        return ""
    lo_hi = f" ({r['rounds'][0]:.2f}–{r['rounds'][1]:.2f})" if r.get("rounds") else ""
    return f"{r['median']:.2f}×{lo_hi}"


def steal_text(fig):
    kept = max((r["machine"]["steal_max_pct"] for r in fig["runs"]), default=0.0)
    dropped = ", ".join(f"{r['machine']['steal_max_pct']:.1f}"
                        + ("" if all(w.startswith("steal") for w in r["discarded_because"])
                           else f" with other load {r['machine']['other_server_cpu_pct']:.0f}%")
                        for r in fig["discarded"])
    flagged = f", {fig['disturbed_runs']} kept disturbed" if fig["disturbed_runs"] else ""
    return f"{kept:.1f}" + (f" (discarded: {dropped})" if dropped else "") + flagged


def print_table(size, rows, startup, base):
    print(f"\n## {size} entities (start-up: " + ", ".join(f"{k} {v:.2f} s" for k, v in startup.items()) + ")\n")
    if base:
        print(f"In-process baseline (plain cedar-policy, whole store, whole policy set, same {REQUEST_BODIES} "
              f"requests): {base['rate']:,.0f} decisions/s ({rng(base, 'rate')}, spread {base['spread_pct']['rate']}%), "
              f"{base['us_per_decision']:.1f} µs each; steal {steal_text(base)}\n")
    print("Medians of the interleaved runs; req/s range and spread ((max − min) / median) beside; "
          "ratios from the medians, with the range of the ratios of runs of the same round.\n")
    print("| scenario | req/s | req/s range (spread) | p50 ms | p99 ms (range) | p99.9 ms | CPU µs/req | non-2xx "
          "| steal % max (discarded runs) | vs ceiling | vs in-process baseline |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if "rps" not in r or r["group"] == "writes":
            continue
        vs_base = ""
        if r["vs_baseline"] and base:
            vs_base = f"{r['rps'] * r['per_request'] / base['rate']:.2f}×"
        print(f"| {name} | {r['rps']:,.0f} | {rng(r, 'rps')} ({r['spread_pct']['rps']}%) | {r['p50_us'] / 1000:.3f} | "
              f"{r['p99_us'] / 1000:.3f} ({rng(r, 'p99_us', 1000, '{:.2f}')}) | {r['p999_us'] / 1000:.3f} | "
              f"{r['cpu_us_per_req']:.1f} | {r['non2xx']} | {steal_text(r)} | {ratio_text(r.get('vs_ref'))} | {vs_base} |")


def print_writes(entry):
    rows, w, f = entry["results"], entry["writes"], entry["freshness"]
    print(f"\n### Writes under load ({w['rate']:g} entity writes/s, interleaved with the same load without)\n")
    print("| scenario | req/s | req/s range (spread) | p99 ms (range) | CPU µs/req | writes/s done (failed, late) "
          "| steal % max (discarded runs) | vs no writes |")
    print("|---|---|---|---|---|---|---|---|")
    for name in (w["quiet"], w["busy"]):
        r = rows[name]
        bg = [run.get("background") or {} for run in r["runs"]]
        done = (f"{min(x['rate'] for x in bg):g}–{max(x['rate'] for x in bg):g} "
                f"({sum(x['failed'] for x in bg)}, {sum(x['late'] for x in bg)})") if all(bg) else ""
        print(f"| {name} | {r['rps']:,.0f} | {rng(r, 'rps')} ({r['spread_pct']['rps']}%) | {r['p99_us'] / 1000:.3f} "
              f"({rng(r, 'p99_us', 1000, '{:.2f}')}) | {r['cpu_us_per_req']:.1f} | {done} | {steal_text(r)} "
              f"| {ratio_text(r.get('vs_ref'))} |")
    if "error" in f:
        print(f"\nFreshness check: {f['error']}")
        return
    print(f"\nFreshness check: {f['writes']} writes to entities {f['requests_flipped']} requests read "
          f"(memberships removed and restored, user deactivated and restored) during {f['seconds']} s of wrk on "
          f"the same requests ({f['concurrent_wrk']['requests']} requests); {f['checks']} answers checked after "
          f"the writes ({f['answers_from_the_cache']} from the decision cache): **{f['stale']} stale** "
          f"({f['answers_behind_the_write_revision']} with a store revision before the write's)")


def print_targets(rows, base, entry):
    """The issue's targets, each as measured in this run (from medians)."""
    g = lambda name: rows.get(name, {})
    ratio = lambda a: (g(a).get("vs_ref") or {}).get("median", 0.0)
    single = g("cedargate cache-off authzen c=16").get("cpu_us_per_req", 0)
    batch = g("cedargate cache-off authzen batch100 c=16").get("cpu_us_per_req", 0) / 100
    steady = g("cedargate cache-off native c=16").get("p99_us", 0)
    reload = g("cedargate cache-off native c=16 reload every 1 s")
    reloads = [run.get("background", {}) for run in reload.get("runs", [])]
    print("\n| target | measured (medians) |")
    print("|---|---|")
    for c in (16, 64):
        print(f"| warm cache >= 0.8x ceiling, c={c} | {ratio_text(g(f'cedargate warm-cache native c={c}').get('vs_ref'))} |")
    print(f"| warm cache p99 <= 1 ms, c=16 | {g('cedargate warm-cache native c=16').get('p99_us', 0) / 1000:.2f} ms |")
    if base:
        print(f"| cache off >= 1.0x in-process baseline, c=16 | "
              f"{g('cedargate cache-off native c=16').get('rps', 0) / base['rate']:.2f}x |")
    print(f"| batch of 100: CPU per decision <= 0.5x single | {batch / max(single, 1e-9):.2f}x ({batch:.1f} vs {single:.1f} µs) |")
    print(f"| reload every 1 s: 0 failed, p99 <= 2x steady | {reload.get('non2xx', 0) + reload.get('socket_errors', 0)} "
          f"failed requests ({sum(r.get('reloads_failed', 0) for r in reloads)} failed reloads), "
          f"p99 {reload.get('p99_us', 0) / max(steady, 1e-9):.2f}x |")
    w = entry["writes"]
    print(f"| warm cache with {w['rate']:g} writes/s to unread entities >= 0.9x without | {ratio(w['busy']):.2f}x |")
    print(f"| writes to read entities: every answer fresh | {entry['freshness'].get('stale', 'not run')} stale |")


def print_runs(rows):
    """Every run, kept or discarded, with the machine's state during it."""
    print("\n#### Runs (in order of each comparison; steal and other load from /proc/stat)\n")
    print(f"| figure | round | kept | /s | steal % CPU {SERVER_CPU} / CPU {CLIENT_CPU} / all "
          f"| other processes % of CPU {SERVER_CPU} / of all | load avg |")
    print("|---|---|---|---|---|---|---|")
    for name, fig in rows.items():
        runs = [(r, "yes" + (" (disturbed)" if r.get("disturbed") else "")) for r in fig["runs"]]
        runs += [(r, "discarded") for r in fig["discarded"]]
        for r, kept in sorted(runs, key=lambda x: (x[0]["round"], x[0]["attempt"])):
            m = r["machine"]
            s = m["steal_pct"]
            print(f"| {name} | {r['round'] + 1} | {kept} | {throughput(r):,.0f} | "
                  f"{s.get(f'cpu{SERVER_CPU}', 0):.1f} / {s.get(f'cpu{CLIENT_CPU}', 0):.1f} / {s.get('cpu', 0):.1f} | "
                  f"{m['other_server_cpu_pct']:.0f} / {m['other_all_cpus_pct']:.0f} | "
                  f"{m['loadavg_1m'][0]:.1f}→{m['loadavg_1m'][1]:.1f} |")


def print_scale(out, sizes):
    print("\n| stored entities | fill s | ready after restart s | cache off req/s (range, spread) | p50 ms | p99 ms "
          "| CPU µs/req | vs ref size | warm cache req/s (range, spread) | p99 ms | vs ref size | peak RSS MB "
          "| steal % max off / warm |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        row = out[size]
        off, on = row["cache_off"], row["warm_cache"]
        fill_text = f"{row['fill_s']:.0f}" if row["fill_s"] is not None else "(kept)"
        print(f"| {row['entities']:,} | {fill_text} | {row['ready_s']:.2f} | {off['rps']:,.0f} ({rng(off, 'rps')}, "
              f"{off['spread_pct']['rps']}%) | {off['p50_us'] / 1000:.2f} | {off['p99_us'] / 1000:.2f} | "
              f"{off['cpu_us_per_req']:.1f} | {ratio_text(off.get('vs_ref'))} | {on['rps']:,.0f} ({rng(on, 'rps')}, "
              f"{on['spread_pct']['rps']}%) | {on['p99_us'] / 1000:.2f} | {ratio_text(on.get('vs_ref'))} | "
              f"{max(row['peak_rss_mb_cache_off'], row['peak_rss_mb_warm_cache']):.0f} | "
              f"{steal_text(off)} / {steal_text(on)} |")
    print_runs({f"{size} {key}": out[size][key] for size in sizes for key in ("cache_off", "warm_cache")})
    print_warnings(out[sizes[0]].get("warnings", []))


def print_warnings(warnings):
    for w in warnings:
        print(f"\n**Warning**: {w}")


if __name__ == "__main__":
    main()
