"""The Python function task scenarios of src/e2e/python.test.ts, driven through the original
protocol by loomclient.py: `python3 scenarios.py HOST PORT NAME [ARG]`. Each scenario asserts
what a user of the original client sees and prints one JSON line of facts for the TS test."""

import json
import os
import sys
import time

import cloudpickle

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loomclient  # noqa: E402
from loomclient import Client, TaskFailed, tasks  # noqa: E402

# The worker's Python needs only cloudpickle: the tasks module travels with the functions.
cloudpickle.register_pickle_by_value(loomclient)

host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
arg = sys.argv[4] if len(sys.argv) > 4 else None
client = Client(host, port)


def failure(task):
    try:
        client.gather(client.submit_one(task))
    except TaskFailed as e:
        return e.error_msg
    raise AssertionError("the task did not fail")


def out(**facts):
    print(json.dumps(facts))


def plain_call():
    @tasks.py_task()
    def hello(a):
        return b"Hello " + a.read()

    def hello2(a):
        return "Hello " + a.read().decode()

    t2 = tasks.py_call(tasks.py_value(hello2), (tasks.const("there"),))
    ids = client.submit([hello(tasks.const("world")), t2])
    assert client.gather(ids[0]) == b"Hello world"
    assert client.gather(ids[1]) == b"Hello there"
    out(ok=True)


def direct_args():
    @tasks.py_task(n_direct_args=1)
    def repeat(n, a):
        return n * a.read()

    @tasks.py_task(context=True, n_direct_args=2)
    def order(ctx, x, y, a, b):
        return "{} {} {} {} {}".format(type(ctx).__name__, x, y, a.read().decode(), b.read().decode())

    def repeat2(n, a):
        return n * a.read()

    @tasks.py_task(n_direct_args=3)
    def count(*args):
        return str(len(args))

    @tasks.py_task()
    def several(a, b):
        return a, "x", b, "yyy", [b, b, "z"]

    c = tasks.const("ABC")
    ids = client.submit([repeat(2, c), repeat(3, c), tasks.py_call(tasks.py_value(repeat2), (c,), direct_args=(2,)),
                         order({"k": 1}, (2, 3), tasks.const("a"), tasks.const("b")),
                         count({"x": 10}, None, True, c, c, c, c), several(tasks.const("A"), tasks.const("BBBB"))])
    assert client.gather(ids[0]) == b"ABCABC"
    assert client.gather(ids[1]) == b"ABCABCABC"
    assert client.gather(ids[2]) == b"ABCABC"
    assert client.gather(ids[3]) == b"Context {'k': 1} (2, 3) a b"
    assert client.gather(ids[4]) == b"7"
    assert client.gather(ids[5]) == [b"A", b"x", b"BBBB", b"yyy", [b"BBBB", b"BBBB", b"z"]]
    out(ok=True)


def context():
    @tasks.py_task(context=True)
    def hello(ctx, a):
        ctx.log_info("Hello was called with " + a.read().decode())
        ctx.log_debug("debug line")
        ctx.log_warn("warn line")
        ctx.log_error("error line")
        ctx.log_critical("critical line")
        return str(ctx.task_id)

    t = hello(tasks.const("marker-7"))
    [tid] = client.submit([t])
    # The worker's id of the task (the server maps each client's ids to its own, README #1).
    worker_id = int(client.gather(tid))
    out(ok=True, task_id=worker_id)


def wrap_unwrap():
    @tasks.py_task()
    def f(a):
        d = a.unwrap()
        return "Value of 'A' is " + d["A"]

    @tasks.py_task()
    def example_1():
        return "Hello"

    @tasks.py_task(context=True)
    def example_2(ctx):
        return ctx.wrap("Hello")

    @tasks.py_task(context=True)
    def example_3(ctx):
        return [ctx.wrap({"A", (1, 2, 3)}), "Hello"]

    @tasks.py_task(context=True)
    def same(ctx, a):
        assert ctx.wrap(a) is a
        return ctx.wrap(a)

    @tasks.py_task()
    def not_pyobj(a):
        return repr(a.unwrap())

    @tasks.py_task()
    def sizes(a, b):
        return "{} {} {} {}".format(a.size() > 0, len(a), b.size(), len(b))

    my_dict = tasks.py_value({"A": "B"})
    v = tasks.py_value((1, "x"))
    ids = client.submit([f(my_dict), example_1(), example_2(), example_3(), same(v), not_pyobj(tasks.const("x")),
                         sizes(v, tasks.const("12345")), tasks.py_value([1, 2, 3])])
    assert client.gather(ids[0]) == b"Value of 'A' is B"
    assert client.gather(ids[1]) == b"Hello"
    assert client.gather(ids[2]) == "Hello"
    assert client.gather(ids[3]) == [{"A", (1, 2, 3)}, b"Hello"]
    assert client.gather(ids[4]) == (1, "x")
    assert client.gather(ids[5]) == b"None"
    assert client.gather(ids[6]) == b"True 0 5 0"
    assert client.gather(ids[7]) == [1, 2, 3]
    # A large pyobj (many pipe reads on the worker) and a large plain result (a file).
    @tasks.py_task(context=True)
    def big(ctx, a):
        return [ctx.wrap(("big", a.read() * 3_000_000)), a.read() * 2_000_000]

    [tid] = client.submit([big(tasks.const("ab"))])
    r = client.gather(tid)
    assert r[0] == ("big", b"ab" * 3_000_000) and r[1] == b"ab" * 2_000_000
    # A pyobj result fetched comes as its pickled bytes under the pyobj type id.
    [tid] = client.submit([tasks.py_value({"k": (1, 2)})])
    client.wait(tid)
    client._send(loomclient._int(1, 2) + loomclient._int(3, tid))
    while True:
        msg = client._event()
        if msg is not None:
            break
    header = loomclient._parse(msg[2][0])
    frame = client._recv()
    assert client.names[header[3][0]] == "loom/pyobj"
    assert header[3][0] == 16
    assert cloudpickle.loads(frame) == {"k": (1, 2)}
    out(ok=True)


def arrays_and_indexes():
    @tasks.py_task()
    def describe(arr, idx, big):
        items = [x.read() for x in arr]
        lines = [x.read() for x in idx]
        try:
            arr[len(arr)]
            raise AssertionError("no IndexError")
        except IndexError as e:
            assert str(e) == "index out of range"
        inner = arr[2]
        return "|".join([
            repr(items), repr(lines), str(len(arr)), str(len(idx)), str(arr.size()), repr(arr.read()),
            repr([x.read() for x in inner]), repr(inner[1].unwrap()), str(big.size()), str(len(big.read())),
            repr(big.read()[:3]),
        ])

    @tasks.py_task()
    def pick(arr, idx):
        # Items of inputs returned as they are (array elements shared, index pieces as raw data).
        return [arr[1], idx[2], arr[2][0], arr]

    big = b"xyz" * 100000  # above 64 KiB: a data file on the worker, mapped by the function
    inner = tasks.array_make((tasks.const("in0"), tasks.py_value((7, "seven"))))
    arr = tasks.array_make((tasks.const("a"), tasks.const("bc"), inner))
    idx = tasks.split(tasks.const("l1\nl2\n\nl4"))
    bigt = tasks.const(big)
    ids = client.submit([describe(arr, idx, bigt), pick(arr, idx)])
    got = client.gather(ids[0]).decode().split("|")
    assert got[0] == "[b'a', b'bc', b'']", got
    assert got[1] == "[b'l1\\n', b'l2\\n', b'\\n', b'l4']", got
    assert got[2:5] == ["3", "4", str(1 + 2 + 3 + len(cloudpickle.dumps((7, "seven"))))], got
    assert got[5] == "b''"
    assert got[6] == "[b'in0', b'']"
    assert got[7] == "(7, 'seven')"
    assert got[8:11] == [str(len(big)), str(len(big)), "b'xyz'"], got
    r = client.gather(ids[1])
    assert r == [b"bc", b"\n", b"in0", [b"a", b"bc", [b"in0", (7, "seven")]]], r

    @tasks.py_task()
    def big_items(arr, idx):
        # A large element of an array and the lines of a large index arrive as files, mapped.
        lines = list(idx)
        return "{} {} {} {} {}".format(len(arr[0].read()), arr[0].size(), arr[1].read().decode(), len(lines),
                                       lines[-1].read().decode())

    text = "".join("line {}\n".format(i) for i in range(20000))
    ids = client.submit([big_items(tasks.array_make((bigt, tasks.const("small"))), tasks.split(tasks.const(text)))])
    assert client.gather(ids[0]) == "{} {} small 20000 line 19999\n".format(len(big), len(big)).encode()

    @tasks.py_task()
    def big_result(a):
        return a.read() * 3

    t = big_result(tasks.const(b"q" * 50000))
    assert client.gather(client.submit_one(t)) == b"q" * 150000
    out(ok=True)


def redirect_merge():
    @tasks.py_task()
    def join(a, b):
        return tasks.merge((a, b, "!", b"?"), "-")

    @tasks.py_task()
    def join_items(arr):
        return tasks.merge((arr[1], arr[0], tasks.const("c")))

    t = tasks.py_task(request=tasks.cpus(2))(lambda a, b: tasks.merge((a, b)))(tasks.const("x"), tasks.const("y"))
    arr = tasks.array_make((tasks.const("A"), tasks.const("B")))
    ids = client.submit([join(tasks.const("x"), tasks.const("y")), join_items(arr), t])
    assert client.gather(ids[0]) == b"x-y-!-?"
    assert client.gather(ids[1]) == b"BAc"
    assert client.gather(ids[2]) == b"xy"
    out(ok=True)


def redirect_run():
    @tasks.py_task()
    def my_run(a, b):
        data = a if a.size() > b.size() else b
        return tasks.run("/bin/cat", stdin=data)

    @tasks.py_task()
    def with_vars(a, b):
        return tasks.run("/bin/echo $X and $Y", [(a, "$X"), (b, "$Y")])

    @tasks.py_task()
    def with_files(a, b):
        return tasks.run("/bin/sh -c 'cat f1 f2 > out; echo done'", [(a, "f1"), (b, "f2")], outputs=("out", None))

    @tasks.py_task()
    def failing(a):
        return tasks.run("/bin/ls /non-existing-dictionary")

    ids = client.submit([
        my_run(tasks.const("short"), tasks.const("the longer one")),
        with_vars(tasks.const("AA"), tasks.const("BB")),
        with_files(tasks.const("one\n"), tasks.const("two\n")),
    ])
    assert client.gather(ids[0]) == b"the longer one"
    assert client.gather(ids[1]) == b"AA and BB\n"
    assert client.gather(ids[2]) == [b"one\ntwo\n", b"done\n"]
    msg = failure(failing(tasks.const("x")))
    assert msg.startswith("Program terminated with status 2"), msg
    out(ok=True)


def errors():
    @tasks.py_task()
    def explode(a):
        raise ValueError("kaboom " + a.read().decode())

    @tasks.py_task()
    def g():
        return 1

    @tasks.py_task()
    def none_in_list():
        return ["ok", None]

    @tasks.py_task()
    def wrong_args():
        return "never"

    facts = {}
    facts["exception"] = failure(explode(tasks.const("now")))
    assert facts["exception"].startswith("Python exception:\nTraceback (most recent call last):\n"), facts
    assert "ValueError: kaboom now" in facts["exception"]
    assert "in explode" in facts["exception"]
    facts["not_pyobj"] = failure(tasks.py_call(tasks.const("not a function"), ()))
    assert facts["not_pyobj"] == "The first argument is not PyObj"
    facts["invalid"] = failure(g())
    assert facts["invalid"] == "Invalid result from python code"
    facts["invalid_item"] = failure(none_in_list())
    assert facts["invalid_item"] == "Invalid result from python code"
    facts["type_error"] = failure(wrong_args(tasks.const("x")))
    assert facts["type_error"].startswith("Python exception:\n") and "TypeError" in facts["type_error"]
    bad_value = tasks.py_value(0)
    bad_value.config = b"this is not a pickle"
    facts["value"] = failure(bad_value)
    assert facts["value"].startswith("Python exception:\nTraceback") and "UnpicklingError" in facts["value"], facts
    # The worker keeps serving.
    assert client.gather(client.submit_one(tasks.py_task()(lambda: "still here")())) == b"still here"
    out(**facts)


def dying():
    @tasks.py_task()
    def die(a):
        os._exit(7)

    @tasks.py_task()
    def segfault():
        import ctypes
        ctypes.string_at(0)

    @tasks.py_task()
    def fine(a):
        return a.read().upper()

    facts = {"exit": failure(die(tasks.const("x"))), "segv": failure(segfault())}
    assert "died (exit status 7)" in facts["exit"], facts
    assert "SIGSEGV" in facts["segv"], facts
    # Replaced: the next tasks run.
    ids = client.submit([fine(tasks.const("a%d" % i)) for i in range(8)])
    assert [client.gather(i) for i in ids] == [b"A%d" % i for i in range(8)]
    out(**facts)


def forever():
    @tasks.py_task()
    def sleep_forever():
        while True:
            time.sleep(1)

    @tasks.py_task()
    def quick(a):
        return a.read()

    client.submit([sleep_forever()])
    start = time.time()
    ids = client.submit([quick(tasks.const("q%d" % i)) for i in range(20)])
    assert [client.gather(i) for i in ids] == [b"q%d" % i for i in range(20)]
    out(ok=True, seconds=time.time() - start)


def shared():
    """A Python call that holds its core for 0.6 s and says when (the TS test runs a JS call too)."""
    @tasks.py_task()
    def hold():
        start = time.time()
        time.sleep(0.6)
        return "{} {}".format(start, time.time())

    out(ok=True, interval=client.gather(client.submit_one(hold())).decode())


def many(n):
    """N calls, each checked: their results merged into one."""
    n = int(n)

    @tasks.py_task(n_direct_args=1)
    def inc(i, a):
        return "{}{},".format(a.read().decode(), i + 1)

    c = tasks.const("x")
    start = time.time()
    [tid] = client.submit([tasks.merge([inc(i, c) for i in range(n)])])
    got = client.gather(tid)
    seconds = time.time() - start
    assert got == "".join("x{},".format(i + 1) for i in range(n)).encode()
    out(ok=True, n=n, seconds=seconds, per_second=n / seconds)


def shared():
    """A Python call that holds its core for 0.6 s and says when (the TS test runs a JS call too)."""
    @tasks.py_task()
    def hold():
        start = time.time()
        time.sleep(0.6)
        return "{} {}".format(start, time.time())

    out(ok=True, interval=client.gather(client.submit_one(hold())).decode())


def many(n):
    n = int(n)

    @tasks.py_task()
    def inc(a):
        return a.read() + b"!"

    c = tasks.const("x")
    start = time.time()
    ids = client.submit([inc(c) for _ in range(n)])
    for i in ids:
        client.wait(i)
    seconds = time.time() - start
    assert client.gather(ids[0]) == b"x!"
    assert client.gather(ids[-1]) == b"x!"
    out(ok=True, n=n, seconds=seconds, per_second=n / seconds)


scenarios = {
    "plain_call": plain_call,
    "direct_args": direct_args,
    "context": context,
    "wrap_unwrap": wrap_unwrap,
    "arrays_and_indexes": arrays_and_indexes,
    "redirect_merge": redirect_merge,
    "redirect_run": redirect_run,
    "errors": errors,
    "dying": dying,
    "forever": forever,
    "many": many,
    "shared": shared,
}

try:
    if arg is None:
        scenarios[name]()
    else:
        scenarios[name](arg)
finally:
    client.close()
