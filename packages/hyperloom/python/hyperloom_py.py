"""The Python side of HyperLoom's Python function tasks (`loom/py/value`, `loom/py/call`).

A worker (packages/hyperloom/src/worker/python.ts) keeps one such process per core and sends it
one task at a time. Semantics are the original's (spec 6.11-6.12): the function object comes
pickled (`cloudpickle`), its inputs as `Data` wrappers, and the return value is converted to a
data object or a task redirection. Needs only `cloudpickle` (and what the user's functions import).

Channel: requests arrive on fd 3, answers leave on fd 4 (stdout and stderr stay free for the
user's prints; the worker logs them). A message is a u32le header length, a JSON header, then the
byte blobs whose lengths the header lists in "blobs" (blobs are referenced by index).
Large inputs are not sent: the header gives the path of the worker's data file, mapped here.

Usage: python3 hyperloom_py.py SPILL_DIR   (results above 64 KiB are written there as files)
"""

import collections.abc
import json
import mmap
import os
import struct
import sys
import traceback

SPILL_LIMIT = 64 * 1024

def _die_with_parent():
    """Linux: this process is killed when the worker dies, even inside a never-ending function."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass  # elsewhere the worker's pipes closing ends an idle process


_die_with_parent()
_in = os.fdopen(3, "rb")
_out = os.fdopen(4, "wb")


def _send(header, blobs=()):
    header["blobs"] = [len(b) for b in blobs]
    js = json.dumps(header).encode()
    _out.write(struct.pack("<I", len(js)))
    _out.write(js)
    for b in blobs:
        _out.write(b)
    _out.flush()


def _receive():
    h = _in.read(4)
    if len(h) < 4:
        return None, None
    (n,) = struct.unpack("<I", h)
    header = json.loads(_in.read(n))
    blobs = [_in.read(size) for size in header.get("blobs", ())]
    return header, blobs


try:
    import cloudpickle
except ImportError as e:
    _send({"fatal": "cloudpickle", "message": str(e), "python": sys.version.split()[0]})
    sys.exit(3)


class InvalidResult(Exception):
    """A return value that is not convertible to a data object (spec 6.12 step 6)."""


class _Call:
    """Per-call state: the data type ids, the files mapped for this call, new result blobs."""

    def __init__(self, ids):
        self.ids = ids
        self.maps = []
        self.blobs = []
        self.files = []

    def blob(self, b):
        self.blobs.append(bytes(b) if not isinstance(b, bytes) else b)
        return len(self.blobs) - 1

    def mapped(self, path):
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.maps.append(m)
        return m

    def discard_files(self):
        """Results written for a call that then failed."""
        for path in self.files:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.files = []

    def close(self):
        for m in self.maps:
            try:
                m.close()
            except BufferError:
                pass  # a memoryview of it is still alive; the GC closes it
        self.maps = []


_DATA, _FILE, _ARRAY, _INDEX, _PYOBJ = "loom/data", "loom/file", "loom/array", "loom/index", "loom/pyobj"


class Data:
    """A task input as the function sees it (the original's `Data` wrapper, spec 6.12.1)."""

    __slots__ = ("_type", "_size", "_length", "_bytes", "_path", "_call", "_ref", "_items", "_obj", "_has_obj")

    def __init__(self, type_name, size, length, call, ref, data=None, path=None, items=None, obj=None, has_obj=False):
        self._type = type_name
        self._size = size
        self._length = length
        self._bytes = data
        self._path = path
        self._call = call
        self._ref = ref  # (input number, [item, item, ...]) or None for a new object
        self._items = items
        self._obj = obj
        self._has_obj = has_obj

    def read(self):
        """The bytes of a D-object (raw data or a file); empty bytes for other objects."""
        if self._type not in (_DATA, _FILE):
            return b""
        if self._bytes is None and self._path is not None:
            self._bytes = self._call.mapped(self._path)
        return bytes(self._bytes) if self._bytes is not None else b""

    def size(self):
        """The object's size (spec 5.3)."""
        return self._size

    def unwrap(self):
        """The Python object of a `loom/pyobj`; None for other objects."""
        if self._type != _PYOBJ:
            return None
        if not self._has_obj:
            self._obj = cloudpickle.loads(self._bytes)
            self._has_obj = True
        return self._obj

    def length(self):
        """The object's length (items of an array, pieces of an index; 0 otherwise). The guide
        documents it; the original only has len()."""
        return self._length

    def __len__(self):
        return self._length

    def __getitem__(self, i):
        if not isinstance(i, int) or i < 0 or i >= self._length:
            raise IndexError("index out of range")
        if self._items is None:
            self._items = _decode_items(self)
        return self._items[i]

    def __iter__(self):
        for i in range(self._length):
            yield self[i]

    def __repr__(self):
        return "<Data {} size={} length={}>".format(self._type, self._size, self._length)


def _frame(buf, pos):
    (n,) = struct.unpack_from("<Q", buf, pos)
    return buf[pos + 8 : pos + 8 + n], pos + 8 + n


# The element type the worker uses, inside array and index inputs, for data above 64 KiB held in a
# file: the frame is the file's path instead of the bytes (crates/loom-core worker PATH_TYPE_ID).
_PATH_TYPE_ID = -2


def _decode(buf, pos, type_id, call, ref):
    """Decodes one object of a stream (spec 5.4) at `pos`: returns (Data, next pos)."""
    ids = call.ids
    body, pos = _frame(buf, pos)
    if type_id == _PATH_TYPE_ID:
        path = bytes(body).decode()
        return Data(_DATA, os.stat(path).st_size, 0, call, ref, path=path), pos
    if type_id == ids["data"]:
        return Data(_DATA, len(body), 0, call, ref, data=body), pos
    if type_id == ids["pyobj"]:
        return Data(_PYOBJ, len(body), 0, call, ref, data=body), pos
    if type_id == ids["array"]:
        types = struct.unpack("<%di" % (len(body) // 4), body)
        items = []
        for j, t in enumerate(types):
            x, pos = _decode(buf, pos, t, call, (ref[0], ref[1] + [j]))
            items.append(x)
        size = sum(x._size for x in items)
        return Data(_ARRAY, size, len(items), call, ref, items=items), pos
    if type_id == ids["index"]:
        (base_type,) = struct.unpack_from("<i", body, 0)
        offsets = struct.unpack_from("<%dQ" % ((len(body) - 4) // 8), body, 4)
        base, pos = _decode(buf, pos, base_type, call, None)
        if base._bytes is None and base._path is not None:
            base._bytes = call.mapped(base._path)
        pieces = [
            Data(_DATA, offsets[j + 1] - offsets[j], 0, call, (ref[0], ref[1] + [j]), data=base._bytes[offsets[j] : offsets[j + 1]])
            for j in range(len(offsets) - 1)
        ]
        return Data(_INDEX, base._size + 8 * len(offsets), len(pieces), call, ref, items=pieces), pos
    # Any other object (a JavaScript value) is opaque here.
    return Data("loom/js/obj", len(body), 0, call, ref, data=body), pos


def _decode_items(d):
    """The items of an array or index input, from its stream frames."""
    if d._type not in (_ARRAY, _INDEX):
        return []
    buf = memoryview(d._bytes)
    ids = d._call.ids
    x, _ = _decode(buf, 0, ids["array"] if d._type == _ARRAY else ids["index"], d._call, d._ref)
    return x._items


class Context:
    """The first argument of a function with `context=True` (spec 6.12.2)."""

    def __init__(self, task_id, call):
        self.task_id = task_id
        self._call = call

    def _log(self, level, msg):
        _send({"log": level, "message": "PyTask id={}: {}".format(self.task_id, msg)})

    def log_debug(self, msg):
        self._log("debug", msg)

    def log_info(self, msg):
        self._log("info", msg)

    def log_warn(self, msg):
        self._log("warn", msg)

    def log_error(self, msg):
        self._log("error", msg)

    def log_critical(self, msg):
        self._log("error", msg)

    def wrap(self, obj):
        """A new `loom/pyobj` holding `obj` (a Data wrapper is returned unchanged)."""
        if isinstance(obj, Data):
            return obj
        return Data(_PYOBJ, 100, 0, self._call, None, obj=obj, has_obj=True)


_spill_dir = sys.argv[1] if len(sys.argv) > 1 else None
_spill_count = 0


def _plain(b, call):
    global _spill_count
    if len(b) > SPILL_LIMIT and _spill_dir is not None:
        _spill_count += 1
        path = os.path.join(_spill_dir, "{}-{}".format(os.getpid(), _spill_count))
        call.files.append(path)
        with open(path, "wb") as f:
            f.write(b)
        return {"k": "file", "p": path}
    return {"k": "plain", "b": call.blob(b)}


def _is_task(v):
    return hasattr(v, "task_type") and hasattr(v, "config") and hasattr(v, "inputs")


def _convert(v, call):
    """A return value as a task result (spec 6.12 step 6)."""
    if isinstance(v, Data):
        if v._ref is not None:
            return {"k": "input", "i": v._ref[0], "at": v._ref[1]}
        if v._type == _PYOBJ:
            return {"k": "pyobj", "b": call.blob(v._bytes if not v._has_obj else cloudpickle.dumps(v._obj))}
        return _plain(v.read(), call)
    if isinstance(v, str):
        return _plain(v.encode(), call)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return _plain(v, call)
    if isinstance(v, collections.abc.Sequence) and not _is_task(v):
        return {"k": "array", "items": [_convert(x, call) for x in v]}
    raise InvalidResult()


def _redirect_input(x, call):
    if isinstance(x, Data) and x._ref is not None:
        return {"i": x._ref[0], "at": x._ref[1]}
    if isinstance(x, str):
        return {"b": call.blob(x.encode())}
    if isinstance(x, (bytes, bytearray, memoryview)):
        return {"b": call.blob(x)}
    if _is_task(x) and x.task_type == "loom/data/const":
        c = x.config
        return {"b": call.blob(c.encode() if isinstance(c, str) else c)}
    raise InvalidResult(
        "Invalid result from python code: an input of a redirected task must be an argument of the call "
        "(or an item of one), str, bytes or tasks.const(...), not {!r}".format(x)
    )


def _redirect(t, call):
    """Task redirection (spec 6.12 step 5): the returned task runs in place of this one."""
    config = t.config
    if isinstance(config, str):
        config = config.encode()
    return {
        "k": "redirect",
        "type": t.task_type,
        "config": call.blob(config if config is not None else b""),
        "inputs": [_redirect_input(x, call) for x in (t.inputs or ())],
    }


_functions = {}


def _function(pickled):
    fn = _functions.get(pickled)
    if fn is None:
        if len(_functions) > 256:
            _functions.clear()
        fn = cloudpickle.loads(pickled)
        _functions[pickled] = fn
    return fn


def _python_exception():
    return "Python exception:\n" + traceback.format_exc()


def _call(req, blobs):
    call = _Call(req["ids"])
    try:
        try:
            fn_obj = _function(blobs[req["fn"]])
            config = blobs[req["config"]]
            params = cloudpickle.loads(config) if config else ()
            inputs = []
            for i, d in enumerate(req["inputs"]):
                data = blobs[d["b"]] if "b" in d else None
                inputs.append(Data(d["t"], d["size"], d["length"], call, (i, []), data=data, path=d.get("p")))
            args = (tuple(params) if params else ()) + tuple(inputs)
            if isinstance(fn_obj, tuple):
                fn, has_context = fn_obj
            else:
                fn, has_context = fn_obj, False
            if has_context:
                result = fn(Context(req["id"], call), *args)
            else:
                result = fn(*args)
        except Exception:
            return {"error": _python_exception()}, []
        try:
            if _is_task(result):
                out = _redirect(result, call)
            else:
                out = _convert(result, call)
        except InvalidResult as e:
            call.discard_files()
            return {"error": str(e) or "Invalid result from python code"}, []
        except Exception:
            call.discard_files()
            return {"error": _python_exception()}, []
        return {"ok": out}, call.blobs
    finally:
        call.close()


def _value(req, blobs):
    try:
        cloudpickle.loads(blobs[req["config"]])
    except Exception:
        return {"error": _python_exception()}, []
    return {"ok": {"k": "value"}}, []


def main():
    _send({"ready": True, "python": sys.version.split()[0], "cloudpickle": cloudpickle.__version__})
    while True:
        req, blobs = _receive()
        if req is None:
            return
        if req["op"] == "call":
            answer, out = _call(req, blobs)
        else:
            answer, out = _value(req, blobs)
        answer["id"] = req["id"]
        _send(answer, out)


if __name__ == "__main__":
    main()
