"""Shared by the peer benchmarks: options, timing, the serving loop.

A peer script starts its cluster of one shape (--workers WxC), prints one JSON line
{"ready": true, "peer", "version", "notes"}, then serves repetitions: each stdin line
{"w": workload, "n": N} runs that cell once and prints one JSON line
{"w", "n", "tasks", "wallMs", "transferMs"?, "mbps"?} or {"w", "n", "error"}. The harness
(run.mjs) interleaves these with ours and kills the process group when a repetition overruns.
"""
import argparse
import json
import subprocess
import sys
import time

W6_PRODUCE = ["head", "-c"]


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", default="2x1", help="WORKERSxCPUS, e.g. 2x1")
    a = p.parse_args()
    nw, nc = (int(x) for x in a.workers.split("x"))
    return nw, nc


def now_ms():
    return time.perf_counter() * 1e3


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def serve(peer, version, notes, one):
    """Announces readiness, then runs one repetition per stdin line with `one(w, n)` ->
    (figures, tasks)."""
    print(json.dumps({"ready": True, "peer": peer, "version": version, "notes": notes}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cell = json.loads(line)
        w, n = cell["w"], cell["n"]
        try:
            r, tasks = one(w, n)
            out = {"w": w, "n": n, "tasks": tasks, **r}
        except Exception as e:  # reported in the row, the peer keeps serving
            out = {"w": w, "n": n, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


# Task bodies (module-level so that both peers can pickle them by reference).
def merge(a, b):
    return a + b


def ident(x):
    return x


def size(x):
    return len(x).to_bytes(8, "little")


def run_true_i(_i):
    return run_true()


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
