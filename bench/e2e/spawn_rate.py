#!/usr/bin/env python3
"""The machine's spawn rate: the ceiling of the W4 workloads (issue 26).

    python3 spawn_rate.py --program true|cat --n 1000 --threads 2

Runs N programs with os.posix_spawn + waitpid, split over THREADS loops running at once, each
in a process of its own (threads of one Python process contend for its lock: 2 threads reached
only 1.3x one here): `/bin/true`, or `cat` reading a line from a pipe with its output to
/dev/null, as W4 runs them. Prints one JSON object: {"program", "n", "threads", "seconds",
"per_s"}; seconds run from the first loop's start to the last one's end.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", choices=["true", "cat"], default="true")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--first", type=int, default=-1, help=argparse.SUPPRESS)  # one loop (a child)
    a = ap.parse_args()
    path = "/bin/true" if a.program == "true" else shutil.which("cat")
    null = os.open(os.devnull, os.O_RDWR)

    def loop(count, first):
        for i in range(first, first + count):
            if a.program == "cat":
                r, w = os.pipe()
                os.write(w, f"line {i}\n".encode())
                os.close(w)
                actions = [(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]
            else:
                r = None
                actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]
            pid = os.posix_spawn(path, [path], os.environ, file_actions=actions)
            if r is not None:
                os.close(r)
            os.waitpid(pid, 0)

    if a.first >= 0:
        t0 = time.time()
        loop(a.n, a.first)
        print(json.dumps([t0, time.time()]))
        return
    share = [a.n // a.threads + (1 if t < a.n % a.threads else 0) for t in range(a.threads)]
    starts = [sum(share[:t]) for t in range(a.threads)]
    me = os.path.abspath(__file__)
    loops = [
        subprocess.Popen([sys.executable, me, "--program", a.program, "--n", str(share[t]), "--first", str(starts[t])], stdout=subprocess.PIPE)
        for t in range(a.threads)
    ]
    spans = [json.loads(p.communicate()[0]) for p in loops]
    s = max(e for _, e in spans) - min(b for b, _ in spans)
    print(json.dumps({"program": a.program, "n": a.n, "threads": a.threads, "seconds": s, "per_s": a.n / s}))

if __name__ == "__main__":
    main()
