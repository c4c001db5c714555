"""Shared by the peer benchmarks: options, timing, JSON output (one line on stdout).

A peer script runs the cells it is given (workload, N) on one cluster shape and prints
{"peer", "version", "results": [{"w", "n", "tasks", "wallMs": {median, min, max}, "mbps"?}], "notes"}.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

W6_PRODUCE = ["head", "-c"]


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", default="2x1", help="WORKERSxCPUS, e.g. 2x1")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--cells", required=True, help='JSON list of {"w": workload, "n": size}')
    a = p.parse_args()
    nw, nc = (int(x) for x in a.workers.split("x"))
    return nw, nc, a.reps, json.loads(a.cells)


def now_ms():
    return time.perf_counter() * 1e3


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def summarize(w, n, tasks, reps):
    walls = [r["wallMs"] for r in reps]
    out = {"w": w, "n": n, "tasks": tasks, "wallMs": {"median": statistics.median(walls), "min": min(walls), "max": max(walls)}}
    out["tasksPerS"] = tasks / (out["wallMs"]["median"] / 1e3)
    if "mbps" in reps[0]:
        out["mbps"] = statistics.median(r["mbps"] for r in reps)
    return out


def emit(peer, version, results, notes):
    print(json.dumps({"peer": peer, "version": version, "results": results, "notes": notes}), flush=True)


# Task bodies (module-level so that both peers can pickle them by reference).
def merge(a, b):
    return a + b


def ident(x):
    return x


def size(x):
    return len(x).to_bytes(8, "little")


def make_array(*items):
    return list(items)


def inc(i):
    return str(i + 1)


def run_true():
    return subprocess.run(["/bin/true"], stdout=subprocess.PIPE, check=True).stdout


def run_cat(data):
    return subprocess.run(["cat"], input=data, stdout=subprocess.PIPE, check=True).stdout


def produce(n):
    return subprocess.run(["head", "-c", str(n), "/dev/zero"], stdout=subprocess.PIPE, check=True).stdout


def nbytes(x):
    return len(x)
