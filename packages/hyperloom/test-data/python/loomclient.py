"""A small HyperLoom client in Python, for tests only (not shipped).

It builds plans the way the original Python client does (spec 4.2, 11.4: `tasks.py_task`,
`py_call`, `py_value`, `run`, ...) and speaks the protocol over a socket, so our server and
workers are driven exactly as the original client drives them. Needs only cloudpickle; protobuf
messages are encoded by hand.
"""

import shlex
import socket
import struct

import cloudpickle

# --------------------------------------------------------------------------- protobuf by hand


def _varint(n):
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire):
    return _varint((field << 3) | wire)


def _int(field, v):
    return _key(field, 0) + _varint(v)


def _bytes(field, v):
    if isinstance(v, str):
        v = v.encode()
    return _key(field, 2) + _varint(len(v)) + v


def _parse(buf):
    """Fields of a message: {field: [values]} (varints as int, length-delimited as bytes)."""
    out = {}
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, pos = _read_varint(buf, pos)
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            v = bytes(buf[pos : pos + n])
            pos += n
        elif wire == 1:
            v = buf[pos : pos + 8]
            pos += 8
        elif wire == 5:
            v = buf[pos : pos + 4]
            pos += 4
        else:
            raise ValueError("bad wire type")
        out.setdefault(field, []).append(v)
    return out


def _read_varint(buf, pos):
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


# --------------------------------------------------------------------------- tasks


class Task:
    task_type = None
    inputs = ()
    config = ""
    resource_request = None
    label = None

    def __repr__(self):
        return "<Task {!r}>".format(self.label or self.task_type)


class ResourceRequest:
    def __init__(self, cpus):
        self.cpus = cpus


def _make(task_type, inputs=(), config="", request=None, label=None):
    t = Task()
    t.task_type = task_type
    t.inputs = tuple(inputs)
    t.config = config
    t.resource_request = request
    t.label = label
    return t


class tasks:
    """The original's `loom.client.tasks` (the parts the tests use)."""

    @staticmethod
    def cpus(n):
        return ResourceRequest(n)

    @staticmethod
    def const(data):
        return _make("loom/data/const", config=data)

    @staticmethod
    def merge(inputs, delimiter=""):
        return _make("loom/data/merge", inputs, delimiter)

    @staticmethod
    def array_make(inputs):
        return _make("loom/array/make", inputs)

    @staticmethod
    def split(input):
        return _make("loom/data/split", (input,))

    @staticmethod
    def get(input, index):
        return _make("loom/base/get", (input,), struct.pack("<Q", index))

    @staticmethod
    def size(input):
        return _make("loom/base/size", (input,))

    @staticmethod
    def run(args, inputs=(), outputs=(None,), stdin=None, request=None):
        if isinstance(args, str):
            args = shlex.split(args)
        ins = [i for i, _ in inputs]
        names = [n for _, n in inputs]
        if stdin is not None:
            ins.append(stdin)
            names.append("+in")
        config = b"".join(_bytes(1, a) for a in args)
        config += b"".join(_bytes(2, n) for n in names)
        config += b"".join(_bytes(3, o if o is not None else "+out") for o in outputs)
        return _make("loom/run/run", ins, config, request or ResourceRequest(1))

    @staticmethod
    def py_value(obj):
        return _make("loom/py/value", (), cloudpickle.dumps(obj), ResourceRequest(1))

    @staticmethod
    def py_call(obj, inputs=(), direct_args=()):
        return _make("loom/py/call", (obj,) + tuple(inputs), cloudpickle.dumps(tuple(direct_args)), ResourceRequest(1))

    @staticmethod
    def py_task(label=None, request=None, context=False, n_direct_args=0):
        def make(fn):
            fn_value = tasks.py_value((fn, bool(context)))
            fn_value.label = "#L:" + fn.__name__

            def call(*args):
                t = tasks.py_call(fn_value, args[n_direct_args:], args[:n_direct_args])
                t.label = label or fn.__name__
                if request is not None:
                    t.resource_request = request
                return t

            return call

        return make


# --------------------------------------------------------------------------- client


class TaskFailed(Exception):
    def __init__(self, id, worker, error_msg):
        self.id = id
        self.worker = worker
        self.error_msg = error_msg
        super().__init__("Task id={} failed: {}".format(id, error_msg))


class Client:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self._send(_int(1, 2) + _int(2, 2))  # Register{protocol 2, client}
        msg = _parse(self._recv())
        self.names = [s.decode() for s in msg.get(5, [])]
        self.symbols = {n: i for i, n in enumerate(self.names)}
        self.next_id = 0
        self.finished = set()
        self.failed = {}

    def _send(self, payload):
        self.sock.sendall(struct.pack("<Q", len(payload)) + payload)

    def _recv(self):
        while len(self.buf) < 8 or len(self.buf) < 8 + struct.unpack_from("<Q", self.buf)[0]:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        n = struct.unpack_from("<Q", self.buf)[0]
        frame, self.buf = self.buf[8 : 8 + n], self.buf[8 + n :]
        return frame

    def submit(self, roots):
        """Sends a plan of `roots` and all they reach; returns their ids."""
        order, ids, stack = [], {}, list(roots)
        seen = set()

        def visit(t):
            if id(t) in seen:
                return
            seen.add(id(t))
            for i in t.inputs:
                visit(i)
            ids[id(t)] = self.next_id
            self.next_id += 1
            order.append(t)

        for t in stack:
            visit(t)
        requests = []
        plan = b""
        root_ids = {id(t) for t in roots}
        for t in order:
            body = _int(1, self.symbols[t.task_type]) + _bytes(2, t.config)
            for i in t.inputs:
                body += _int(3, ids[id(i)])
            if t.resource_request is not None:
                if t.resource_request.cpus not in requests:
                    requests.append(t.resource_request.cpus)
                body += _int(5, requests.index(t.resource_request.cpus))
            if id(t) in root_ids:
                body += _int(6, 1)
            if t.label:
                body += _bytes(12, t.label)
            plan += _bytes(2, body)
        cpus = self.symbols["loom/resource/cpus"]
        reqs = b"".join(_bytes(1, _bytes(1, _int(1, cpus) + _int(2, n))) for n in requests)
        self._send(_int(1, 1) + _bytes(2, reqs + plan + _int(4, ids[id(order[0])])))
        return [ids[id(t)] for t in roots]

    def _event(self):
        msg = _parse(self._recv())
        kind = msg[1][0]
        if kind == 2:  # TASK_FINISHED
            self.finished.add(msg[7][0])
        elif kind == 3:  # TASK_FAILED
            e = _parse(msg[4][0])
            self.failed[e[1][0]] = TaskFailed(e[1][0], e.get(2, [b""])[0].decode(), e.get(3, [b""])[0].decode())
        elif kind == 4:
            e = _parse(msg[4][0])
            raise RuntimeError("server error: " + e.get(3, [b""])[0].decode())
        elif kind == 1:  # DATA
            return msg
        return None

    def wait(self, task_id):
        while task_id not in self.finished:
            if task_id in self.failed:
                raise self.failed[task_id]
            self._event()

    def fetch(self, task_id):
        self.wait(task_id)
        self._send(_int(1, 2) + _int(3, task_id))
        while True:
            msg = self._event()
            if msg is not None:
                header = _parse(msg[2][0])
                return self._data(header[3][0])

    def _data(self, type_id):
        name = self.names[type_id]
        frame = self._recv()
        if name == "loom/data":
            return frame
        if name == "loom/pyobj":
            return cloudpickle.loads(frame)
        if name == "loom/array":
            types = struct.unpack("<%di" % (len(frame) // 4), frame)
            return [self._data(t) for t in types]
        if name == "loom/index":
            base_type = struct.unpack_from("<i", frame)[0]
            offsets = struct.unpack_from("<%dQ" % ((len(frame) - 4) // 8), frame, 4)
            base = self._data(base_type)
            return [base[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        raise ValueError("data of type " + name)

    def release(self, task_id):
        self._send(_int(1, 3) + _int(3, task_id))

    def gather(self, task_id):
        r = self.fetch(task_id)
        self.release(task_id)
        return r

    def submit_one(self, task):
        return self.submit([task])[0]

    def close(self):
        self.sock.close()
