"""The e2e workloads on Dask distributed (a LocalCluster of worker processes), written the way
Dask's documentation recommends for many small independent calls: futures, `client.map` and
`client.gather` (https://distributed.dask.org/en/stable/client.html, "Submit tasks",
"Gather results"); a chain is `client.submit` of each step on the previous future.

Closest equivalents: a W1 merge takes its two small constants as arguments (N Dask tasks, fewer
than our 3N+1), and the client gathers the N results (our arrayMake's array); `pure=False` so
that identical calls are not merged into one key. W4 calls subprocess. W6 pins producer and
consumer to different workers with `workers=` and times the transfer phase alone (the consumer
on the other worker), as ours does.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (ident, inc, merge, nbytes, now_ms, parse_args, produce,  # noqa: E402
                    run_cat, run_true_i, serve, size)


def main():
    nw, nc = parse_args()
    import dask
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=nw, threads_per_worker=nc, processes=True, dashboard_address=None)
    client = Client(cluster)
    workers = sorted(client.scheduler_info()["workers"].keys())

    def one(w, n):
        t0 = now_ms()
        if w in ("W6", "W6-fetch"):
            if w == "W6" and len(workers) < 2:
                raise ValueError("W6 needs two workers")
            p = client.submit(produce, n, workers=[workers[0]], pure=False)
            client.gather(client.submit(nbytes, p, workers=[workers[0]], pure=False))
            t1 = now_ms()
            if w == "W6":
                got = client.submit(nbytes, p, workers=[workers[1]], pure=False).result()
            else:
                got = len(p.result())
            t2 = now_ms()
            assert got == n
            del p
            return {"wallMs": t2 - t0, "transferMs": t2 - t1, "mbps": n / 1e6 / ((t2 - t1) / 1e3)}, 2
        if w in ("W1", "W1-gather"):
            fs = client.map(merge, [b"ab"] * n, [b"cd"] * n, pure=False)
            res = client.gather(fs)
            assert len(res) == n and res[-1] == b"abcd"
            return {"wallMs": now_ms() - t0}, n
        if w == "W2":
            c = client.scatter(b"x" * 100, broadcast=True)
            res = client.gather(client.map(size, [c] * n, pure=False))
            assert len(res) == n and int.from_bytes(res[-1], "little") == 100
            return {"wallMs": now_ms() - t0}, n + 1
        if w == "W3":
            f = client.scatter(b"x")
            for _ in range(n):
                f = client.submit(ident, f, pure=False)
            assert f.result() == b"x"
            return {"wallMs": now_ms() - t0}, n + 1
        if w == "W4-true":
            res = client.gather(client.map(run_true_i, range(n), pure=False))
        elif w == "W4-cat":
            res = client.gather(client.map(run_cat, [f"line {i}\n".encode() for i in range(n)], pure=False))
            assert res[-1] == f"line {n - 1}\n".encode()
        elif w == "W5":
            res = client.gather(client.map(inc, range(n), pure=False))
            assert res[-1] == str(n)
        else:
            raise ValueError(f"unknown workload {w}")
        assert len(res) == n
        return {"wallMs": now_ms() - t0}, n

    one("W1", 100)  # warm-up
    notes = ["client.map + gather (W3: submit per step)", "W1: consts as arguments (N Dask tasks)", "W6: workers= pins producer and consumer"]
    try:
        serve("dask", dask.__version__, notes, one)
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
