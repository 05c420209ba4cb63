"""Measurement machinery of bench/load.py: servers, wrk runs, the machine's
steal time and other load around each run, interleaved runs with retries of
disturbed ones, and medians with their spread."""
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import nullcontext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOAD = os.path.join(ROOT, "bench", "workload")
TICKS = os.sysconf("SC_CLK_TCK")
TOKEN = "bench-token"
# The CPUs the harness pins to: the server (or the in-process baseline) on
# SERVER_CPU, wrk and every client of the harness on CLIENT_CPU.
SERVER_CPU, CLIENT_CPU = 0, 1
# Figures summarised per run: median, min and max over the kept runs.
# Other processes' share of the server's CPU above which a comparison is
# reported as measured on a busy machine.
BUSY_PCT = 10.0
FIGURE_KEYS = ("rps", "p50_us", "p99_us", "p999_us", "cpu_us_per_req", "rate", "us_per_decision")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_ticks(pid):
    """User + system CPU ticks of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Server:
    """A server process pinned to SERVER_CPU with one tokio worker."""

    def __init__(self, argv, port, token=None, env=None, name=None):
        env = dict(os.environ, TOKIO_WORKER_THREADS="1", CEDARGATE_LOG="warn", **(env or {}))
        self.port, self.token, self.name = port, token, name or os.path.basename(argv[0])
        started = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *argv], env=env,
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
        return pid_ticks(self.proc.pid)

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def request(self, method, path, body=None, timeout=60):
        """One request with the bearer token; returns (status, parsed JSON body or None)."""
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)

    def post(self, path, body=b""):
        return self.request("POST", path, body)[0]

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def iter_entities(path, chunk=1 << 20):
    """The entities of a Cedar entity JSON array file, one at a time, without
    holding the whole file (entities.json of the 10m store is ~2.3 GB)."""
    decoder = json.JSONDecoder()
    buf, pos, started = "", 0, False
    with open(path) as f:
        while True:
            block = f.read(chunk)
            buf = buf[pos:] + block
            pos = 0
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    pos += 1
                if not started:
                    if pos >= len(buf):
                        break
                    assert buf[pos] == "[", "not a JSON array"
                    started, pos = True, pos + 1
                    continue
                if pos < len(buf) and buf[pos] == "]":
                    return
                try:
                    value, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    break  # incomplete: read more
                yield value
                pos = end
            if not block:
                if buf[pos:].strip():
                    raise ValueError(f"{path}: truncated entity array")
                return


def fill(server, wl, chunk=5000):
    """Loads entities.json through PUT /v1/entities, in chunks."""
    batch = []
    for entity in iter_entities(os.path.join(wl, "entities.json")):
        batch.append(entity)
        if len(batch) == chunk:
            server.request("PUT", "/v1/entities", batch, timeout=600)
            batch = []
    if batch:
        server.request("PUT", "/v1/entities", batch, timeout=600)


# ---------------------------------------------------------------- machine load

def proc_stat():
    """Per-CPU jiffies from /proc/stat: {"cpu": [...], "cpu0": [...], ...}
    (user nice system idle iowait irq softirq steal; guest time is already
    inside user and nice)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *values = line.split()
            out[name] = [int(v) for v in values[:8]]
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_seconds(usage):
    return usage.ru_utime + usage.ru_stime


class Probe:
    """The machine around one run: steal time as a share of each CPU's time
    (aggregate, the server's CPU and the client's CPU), and the CPU the rest
    of this shared machine used meanwhile: busy time (user, nice, system) on
    the server's CPU beyond the server's own, and on all CPUs beyond every
    process of the harness (server, wrk, helpers, the harness itself).
    Interrupt and softirq time (loopback networking) is left out on both
    sides, so "other" is an estimate."""

    def __init__(self, attributed):
        self.attributed = attributed  # objects with cpu_ticks(): server, writer
        self.stat = proc_stat()
        self.load = loadavg()
        self.children = cpu_seconds(resource.getrusage(resource.RUSAGE_CHILDREN))
        self.me = cpu_seconds(resource.getrusage(resource.RUSAGE_SELF))
        self.ticks = [a.cpu_ticks() for a in attributed]
        self.started = time.monotonic()

    def finish(self, server_cpu_s=None):
        """`server_cpu_s`: the CPU of what ran on SERVER_CPU when it is a
        child that already exited (the in-process baseline)."""
        wall = time.monotonic() - self.started
        stat = proc_stat()
        delta = {k: [a - b for a, b in zip(stat[k], self.stat.get(k, [0] * 8))] for k in stat}
        steal = {k: 100.0 * d[7] / max(sum(d), 1) for k, d in delta.items()
                 if k in ("cpu", f"cpu{SERVER_CPU}", f"cpu{CLIENT_CPU}")}
        ours = [(a.cpu_ticks() - t) / TICKS for a, t in zip(self.attributed, self.ticks)]
        children = cpu_seconds(resource.getrusage(resource.RUSAGE_CHILDREN)) - self.children
        me = cpu_seconds(resource.getrusage(resource.RUSAGE_SELF)) - self.me
        busy = lambda k: sum(delta.get(k, [0] * 8)[:3]) / TICKS
        on_server_cpu = ours[0] if ours else (server_cpu_s or 0.0)
        ncpu = sum(1 for k in delta if k != "cpu")
        return {
            "steal_pct": {k: round(v, 2) for k, v in steal.items()},
            "steal_max_pct": round(max((steal.get(f"cpu{c}", 0.0) for c in (SERVER_CPU, CLIENT_CPU)),
                                       default=steal.get("cpu", 0.0)), 2),
            "other_server_cpu_pct": round(max(0.0, busy(f"cpu{SERVER_CPU}") - on_server_cpu) * 100 / wall, 1),
            "other_all_cpus_pct": round(max(0.0, busy("cpu") - sum(ours) - children - me) * 100 / (wall * ncpu), 1),
            "loadavg_1m": [self.load, loadavg()],
            "wall_s": round(wall, 2),
        }


# ---------------------------------------------------------------- runs

def wrk(server, bodies, path, connections, duration, client_cpu=CLIENT_CPU):
    env = dict(os.environ, WRK_BODIES=bodies, WRK_PATH=path)
    if server.token:
        env["WRK_TOKEN"] = server.token
    threads = str(min(connections, 2))
    before = server.cpu_ticks()
    out = subprocess.run(["taskset", "-c", str(client_cpu), "wrk", "-t", threads, "-c", str(connections),
                          "-d", f"{duration}s", "--latency", "-s", os.path.join(ROOT, "bench", "wrk_bodies.lua"),
                          f"http://127.0.0.1:{server.port}{path}"],
                         env=env, check=True, capture_output=True, text=True).stdout
    cpu_s = (server.cpu_ticks() - before) / TICKS
    result = json.loads(out.strip().splitlines()[-1])
    secs = result["duration_us"] / 1e6
    result.update(rps=result["requests"] / secs, cpu_us_per_req=cpu_s * 1e6 / max(result["requests"], 1))
    return result


class Load:
    """One figure's load: wrk against a server, optionally with background
    activity (a context manager factory whose value, if it has cpu_ticks(),
    is counted as the harness's own CPU, and whose stats() land in the run)."""

    def __init__(self, name, server, bodies, path, connections, ref=None, per_request=1, vs_baseline=False,
                 background=None):
        self.name, self.server, self.bodies, self.path = name, server, bodies, path
        self.connections, self.ref, self.per_request = connections, ref, per_request
        self.vs_baseline, self.background = vs_baseline, background

    def run(self, duration):
        with (self.background() if self.background else nullcontext()) as helper:
            attributed = [self.server] + ([helper] if hasattr(helper, "cpu_ticks") else [])
            probe = Probe(attributed)
            result = wrk(self.server, self.bodies, self.path, self.connections, duration)
            result["machine"] = probe.finish()
        if hasattr(helper, "stats"):
            result["background"] = helper.stats()
        return result


class Baseline:
    """Plain cedar-policy in-process (whole store, whole policy set) on the
    requests the HTTP runs send, pinned to the server's CPU."""

    ref, per_request, vs_baseline = None, 1, False

    def __init__(self, name, binary, wl, requests):
        self.name, self.binary, self.wl, self.requests = name, binary, wl, requests

    def run(self, duration):
        probe = Probe([])
        before = cpu_seconds(resource.getrusage(resource.RUSAGE_CHILDREN))
        out = subprocess.run(["taskset", "-c", str(SERVER_CPU), self.binary, WORKLOAD, self.wl,
                              str(self.requests), str(duration)],
                             check=True, capture_output=True, text=True).stdout
        used = cpu_seconds(resource.getrusage(resource.RUSAGE_CHILDREN)) - before
        result = json.loads(out.strip().splitlines()[-1])
        result["machine"] = probe.finish(server_cpu_s=used)
        return result


class Policy:
    """When a run counts as disturbed and how often it is repeated."""

    def __init__(self, runs, max_steal_pct, retries, max_other_pct=None):
        self.runs, self.max_steal_pct, self.retries, self.max_other_pct = runs, max_steal_pct, retries, max_other_pct

    def disturbed(self, result):
        m = result["machine"]
        why = []
        if m["steal_max_pct"] > self.max_steal_pct:
            why.append(f"steal {m['steal_max_pct']:.1f}% > {self.max_steal_pct}%")
        if self.max_other_pct is not None and m["other_server_cpu_pct"] > self.max_other_pct:
            why.append(f"other load on CPU {SERVER_CPU} {m['other_server_cpu_pct']:.0f}% > {self.max_other_pct}%")
        return why


def interleave(group, loads, duration, policy, log=print):
    """Runs the loads of one comparison A, B, C, A, B, C, ... `policy.runs`
    rounds; a disturbed run is discarded and repeated at once, at most
    `policy.retries` times (the last attempt is then kept, flagged).
    Returns {name: figure, "_order": [names as run], "_warning": text or None}."""
    kept = {l.name: [] for l in loads}
    discarded = {l.name: [] for l in loads}
    order = []
    for k in range(policy.runs):
        for load in loads:
            for attempt in range(policy.retries + 1):
                result = load.run(duration)
                result.update(round=k, attempt=attempt)
                why = policy.disturbed(result)
                order.append(load.name)
                m = result["machine"]
                log(f"  [{group}] round {k + 1}/{policy.runs} {load.name}: "
                    f"{result.get('rps', result.get('rate', 0)):,.0f}/s, steal {m['steal_max_pct']:.1f}%, "
                    f"other on CPU {SERVER_CPU} {m['other_server_cpu_pct']:.0f}%"
                    + (f"  DISTURBED ({'; '.join(why)})" if why else "")
                    + (f", kept after {attempt} retries" if why and attempt == policy.retries else ""))
                if why and attempt < policy.retries:
                    result["discarded_because"] = why
                    discarded[load.name].append(result)
                    continue
                if why:
                    result["disturbed"] = why
                kept[load.name].append(result)
                break
    figures = {}
    for load in loads:
        figures[load.name] = summarise(kept[load.name], discarded[load.name])
        figures[load.name].update(group=group, ref=load.ref, per_request=load.per_request,
                                  vs_baseline=load.vs_baseline)
    for load in loads:
        if load.ref in figures:
            figures[load.name]["vs_ref"] = paired_ratio(figures[load.name], figures[load.ref])
    figures["_order"] = order
    busiest = max((r["machine"]["other_server_cpu_pct"] for runs in kept.values() for r in runs), default=0.0)
    figures["_warning"] = None
    if busiest > BUSY_PCT:
        # Measured: under contention the scheduler moves other processes off
        # the server's CPU for some loads and not others (e.g. a cedargate
        # doing 100 writes/s got all of CPU 0, the same load without writes
        # a third of it), so ratios measured on a busy machine mislead.
        figures["_warning"] = (f"{group}: other processes used up to {busiest:.0f}% of CPU {SERVER_CPU} during kept "
                               f"runs; the figures of this comparison are not trustworthy (--max-other repeats such runs)")
        log("  WARNING " + figures["_warning"])
    return figures


def summarise(runs, discarded=()):
    """Medians of the kept runs, with min and max and the relative spread
    ((max - min) / median, in %) of each figure."""
    fig = {"runs": runs, "discarded": list(discarded)}
    for key in FIGURE_KEYS:
        values = [r[key] for r in runs if key in r]
        if len(values) != len(runs) or not values:
            continue
        med = statistics.median(values)
        fig[key] = med
        fig.setdefault("range", {})[key] = [min(values), max(values)]
        fig.setdefault("spread_pct", {})[key] = round(100.0 * (max(values) - min(values)) / med, 1) if med else 0.0
    for key in ("non2xx", "socket_errors", "requests"):
        if any(key in r for r in runs):
            fig[key] = sum(r.get(key, 0) for r in runs)
    fig["steal_max_pct"] = max((r["machine"]["steal_max_pct"] for r in runs), default=0.0)
    fig["disturbed_runs"] = sum(1 for r in runs if r.get("disturbed"))
    return fig


def throughput(fig):
    return fig.get("rps", fig.get("rate", 0.0))


def paired_ratio(a, b):
    """a / b from the medians, and the range of the ratios of the runs of
    the same round (the interleaving pairs them)."""
    per_round = [throughput(x) / throughput(y) for x, y in zip(a["runs"], b["runs"]) if throughput(y)]
    return {"median": throughput(a) / throughput(b) if throughput(b) else 0.0,
            "rounds": [min(per_round), max(per_round)] if per_round else None}
