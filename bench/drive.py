#!/usr/bin/env python3
"""Sends request bodies one after another over one keep-alive connection, for
profiling the server under callgrind (where wrk's rate would only queue).

    python3 bench/drive.py PORT COUNT [PATH] [--bodies FILE]

Bodies: one JSON document per line, as bench/workload/render_bodies.py
writes them (default target/bench-workload/13k/bodies.native.jsonl). Exits
non-zero unless every answer is 200.
"""
import argparse
import http.client
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("count", type=int)
ap.add_argument("path", nargs="?", default="/v1/is_authorized")
ap.add_argument("--bodies", default=os.path.join(ROOT, "target", "bench-workload", "13k", "bodies.native.jsonl"))
ap.add_argument("--token", default="bench-token")
args = ap.parse_args()

with open(args.bodies, "rb") as f:
    bodies = [line.strip() for _, line in zip(range(args.count), f)]
conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=600)
headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
ok = 0
for body in bodies:
    conn.request("POST", args.path, body, headers)
    answer = conn.getresponse()
    answer.read()
    ok += answer.status == 200
print(f"{ok} of {len(bodies)} answered 200")
sys.exit(0 if ok == len(bodies) else 1)
