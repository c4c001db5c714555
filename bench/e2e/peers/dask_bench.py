"""The e2e workloads on Dask distributed (LocalCluster of worker processes), as low-level graphs.

Closest equivalents: W1 merges take their two small constants inline (Dask has no const task:
N+1 graph tasks, fewer than our 3N+1); W4 calls subprocess; W6 pins producer and consumer to
different workers with `workers=`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (emit, ident, inc, log, make_array, merge, nbytes, now_ms, parse_args, produce,  # noqa: E402
                    run_cat, run_true, size, summarize)


def graphs(w, n):
    """(graph, keys to get, task count) of workload w."""
    d = {}
    if w in ("W1", "W1-gather"):
        for i in range(n):
            d[f"m{i}"] = (merge, b"ab", b"cd")
        keys = [f"m{i}" for i in range(n)]
    elif w == "W2":
        d["c"] = b"x" * 100
        for i in range(n):
            d[f"s{i}"] = (size, "c")
        keys = [f"s{i}" for i in range(n)]
    elif w == "W3":
        d["t0"] = b"x"
        for i in range(1, n + 1):
            d[f"t{i}"] = (ident, f"t{i - 1}")
        return d, f"t{n}", n + 1
    elif w == "W4-true":
        for i in range(n):
            d[f"r{i}"] = (run_true,)
        keys = [f"r{i}" for i in range(n)]
    elif w == "W4-cat":
        for i in range(n):
            d[f"r{i}"] = (run_cat, f"line {i}\n".encode())
        keys = [f"r{i}" for i in range(n)]
    elif w == "W5":
        for i in range(n):
            d[f"f{i}"] = (inc, i)
        keys = [f"f{i}" for i in range(n)]
    else:
        raise ValueError(w)
    if w == "W1-gather":
        return d, keys, n
    d["arr"] = (make_array, *keys)
    return d, "arr", len(d)


def one(client, w, n, workers):
    t0 = now_ms()
    if w in ("W6", "W6-fetch"):
        p = client.submit(produce, n, workers=[workers[0]], pure=False)
        p.result() if False else client.gather(client.submit(nbytes, p, workers=[workers[0]], pure=False))
        t1 = now_ms()
        if w == "W6":
            got = client.submit(nbytes, p, workers=[workers[1]], pure=False).result()
        else:
            got = len(p.result())
        t2 = now_ms()
        assert got == n
        del p
        return {"wallMs": t2 - t0, "mbps": n / 1e6 / ((t2 - t1) / 1e3)}, 2
    d, keys, tasks = graphs(w, n)
    res = client.get(d, keys)
    t1 = now_ms()
    if w == "W1":
        assert len(res) == n and res[-1] == b"abcd"
    return {"wallMs": t1 - t0}, tasks


def main():
    nw, nc, reps, cells = parse_args()
    import dask
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=nw, threads_per_worker=nc, processes=True, dashboard_address=None)
    client = Client(cluster)
    workers = sorted(client.scheduler_info()["workers"].keys())
    notes = ["W1 consts inline (N+1 Dask tasks)", "W6: producer and consumer pinned to two workers with workers="]
    one(client, "W1", 100, workers)  # warm-up
    results = []
    for c in cells:
        w, n = c["w"], c["n"]
        if w == "W6" and len(workers) < 2:
            continue
        rs = []
        tasks = 0
        for _ in range(reps):
            r, tasks = one(client, w, n, workers)
            rs.append(r)
            log(f"  dask {w} N={n} {nw}x{nc}: {r['wallMs']:.0f} ms")
        results.append(summarize(w, n, tasks, rs))
    client.close()
    cluster.close()
    emit("dask", dask.__version__, results, notes)


if __name__ == "__main__":
    main()
