"""The e2e workloads on Ray (remote functions). Cluster shape WxC: W Ray nodes of C cpus each
(ray.cluster_utils.Cluster: separate raylets and object stores on this machine).

Written as Ray's documentation shows many independent calls: `f.remote(...)` per call and one
`ray.get(refs)` (https://docs.ray.io/en/latest/ray-core/tasks.html); a chain passes each ref on.
Closest equivalents: a W1 merge takes its two constants as arguments (N Ray tasks) and the
driver gets the N results (our arrayMake's array); W4 calls subprocess; W6 consumes the object
on the other node (a custom resource pins producer and consumer) and times that phase alone.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import now_ms, parse_args, serve  # noqa: E402


def main():
    nw, nc = parse_args()
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    store = 1024 * 1024 * 1024
    cluster = Cluster()
    for i in range(nw):
        cluster.add_node(num_cpus=nc, object_store_memory=store, resources={f"n{i}": 1})
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    merge = ray.remote(common.merge)
    ident = ray.remote(common.ident)
    size = ray.remote(common.size)
    inc = ray.remote(common.inc)
    run_true = ray.remote(common.run_true)
    run_cat = ray.remote(common.run_cat)
    produce = ray.remote(common.produce)
    nbytes = ray.remote(common.nbytes)

    def one(w, n):
        t0 = now_ms()
        if w in ("W6", "W6-fetch"):
            if w == "W6" and nw < 2:
                raise ValueError("W6 needs two nodes")
            p = produce.options(resources={"n0": 0.01}).remote(n)
            ray.wait([p])
            t1 = now_ms()
            if w == "W6":
                got = ray.get(nbytes.options(resources={f"n{nw - 1}": 0.01}).remote(p))
            else:
                got = len(ray.get(p))
            t2 = now_ms()
            assert got == n
            del p
            return {"wallMs": t2 - t0, "transferMs": t2 - t1, "mbps": n / 1e6 / ((t2 - t1) / 1e3)}, 2
        if w in ("W1", "W1-gather"):
            refs = [merge.remote(b"ab", b"cd") for _ in range(n)]
        elif w == "W2":
            c = ray.put(b"x" * 100)
            refs = [size.remote(c) for _ in range(n)]
        elif w == "W3":
            ref = ray.put(b"x")
            for _ in range(n):
                ref = ident.remote(ref)
            assert ray.get(ref) == b"x"
            return {"wallMs": now_ms() - t0}, n + 1
        elif w == "W4-true":
            refs = [run_true.remote() for _ in range(n)]
        elif w == "W4-cat":
            refs = [run_cat.remote(f"line {i}\n".encode()) for i in range(n)]
        elif w == "W5":
            refs = [inc.remote(i) for i in range(n)]
        else:
            raise ValueError(w)
        res = ray.get(refs)
        assert len(res) == n
        return {"wallMs": now_ms() - t0}, n

    one("W1", 100)  # warm-up
    notes = [f"Ray: {nw} node(s) x {nc} cpu(s) via ray.cluster_utils.Cluster", "f.remote per call + one ray.get", "W1: consts as arguments (N Ray tasks)"]
    try:
        serve("ray", ray.__version__, notes, one)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
