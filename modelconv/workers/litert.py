"""The LiteRT interpreter in a worker process, so a file that makes it abort never kills modelconv.

LiteRT's kernels ``abort()`` on some inputs (an int8 ADD without quantization parameters
dies in prepare, an int8 LESS in invoke), which would take the whole process with it. Every
interpreter modelconv creates therefore lives in one long-lived worker
(``python -m modelconv.workers.litert``), spawned on first use and shared by all models of
the parent process; a crash kills only the worker, the next request spawns a new one and
models loaded before are reloaded transparently.

Protocol (parent <-> worker, over the worker's stdin/stdout): each message is a frame
``len(header) header len(payload) payload`` with 8-byte big-endian lengths; the header is
JSON, the payload either raw model bytes or arrays' raw bytes, laid out as the header's
``arrays`` list says (key, dtype, shape, size: no pickle). The worker's own stdout is
redirected to its stderr, so text that the runtime prints cannot corrupt the protocol;
stderr goes to a temporary file that is read when the worker dies.

When the worker dies, :class:`~modelconv.errors.RuntimeCrashError` names the file, the
phase (prepare / invoke) and the op: the op is found by re-running prefixes of the
model's operator list in a probe worker (a binary search, log2(#ops) runs).

This module imports nothing from ``modelconv.verification`` or ``modelconv.importers``.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from modelconv.errors import MissingDependencyError, RuntimeCrashError

#: seconds one request may take before the worker is killed
REQUEST_TIMEOUT = 900.0
_LEN = struct.Struct(">Q")
_PHASE = b"modelconv-litert-phase:"
_SIGNALS = {-int(s): s.name for s in (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS,
                                      signal.SIGILL, signal.SIGFPE, signal.SIGKILL)}
_MAX_PROBES = 24


class LiteRTError(RuntimeError):
    """The interpreter raised an exception (the worker survived): ``kind`` is its type name."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class _Stale(Exception):
    """The request was for handles of a worker process that has since died."""


class _WorkerDied(Exception):
    """The worker process ended while answering a request."""

    def __init__(self, returncode: int | None, stderr: str, phase: str):
        self.returncode = returncode
        self.stderr = stderr
        self.phase = phase
        super().__init__(f"LiteRT worker died ({returncode})")


# --------------------------------------------------------------------------------------
# framing (both sides)


def _pack_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[list[Any], bytes]:
    """(layout, data): each array's key, dtype, shape, and all their bytes concatenated."""
    layout: list[Any] = []
    chunks: list[bytes] = []
    for key, value in arrays.items():
        # np.ascontiguousarray would make a 0-d value 1-D; keep scalars scalar
        arr = np.require(np.asarray(value), requirements="C")
        if arr.dtype.hasobject:
            raise ValueError(f"tensor '{key}' has dtype {arr.dtype}, which cannot be sent")
        layout.append([key, arr.dtype.str, list(arr.shape), arr.nbytes])
        chunks.append(arr.tobytes())
    return layout, b"".join(chunks)


def _unpack_arrays(layout: Sequence[Any], payload: bytes) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    offset = 0
    for key, dtype, shape, nbytes in layout:
        data = payload[offset:offset + nbytes]
        out[key] = np.frombuffer(data, np.dtype(dtype)).reshape(shape).copy()
        offset += nbytes
    return out


def _frame(header: Mapping[str, Any], payload: bytes) -> list[bytes]:
    head = json.dumps(header).encode()
    return [_LEN.pack(len(head)), head, _LEN.pack(len(payload)), payload]


# --------------------------------------------------------------------------------------
# parent side


class LiteRTWorker:
    """One worker process; spawned on first use, respawned after it dies."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        #: increases every time a new process is spawned (handles are per process)
        self.generation = 0
        self._closing: list[tuple[int, int]] = []

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._pid != os.getpid():  # forked: the pipes belong to the parent
            self._proc, self._stderr, self._pid = None, None, os.getpid()
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop()
        if importlib.util.find_spec("ai_edge_litert") is None:  # say so here, clearly
            raise MissingDependencyError("ai-edge-litert", "tflite", "Running .tflite models")
        self._stderr = tempfile.TemporaryFile(prefix="modelconv-litert-")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "modelconv.workers.litert"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, env=_worker_env(), bufsize=0,
        )
        self.generation += 1
        return self._proc

    def request(self, header: dict[str, Any], payload: bytes = b"",
                timeout: float = REQUEST_TIMEOUT,
                generation: int | None = None) -> tuple[dict[str, Any], bytes]:
        """Send one request; returns the reply's (header, payload).

        ``generation``: the worker generation the request's handle belongs to; when the
        process has been replaced since, nothing is sent and ``_Stale`` is raised.

        Raises:
            LiteRTError: the interpreter raised an exception.
            _WorkerDied: the worker process ended (abort, segfault, killed).
        """
        with self._lock:
            proc = self._ensure()
            if generation is not None and generation != self.generation:
                raise _Stale
            generation = self.generation
            pending, self._closing = self._closing, []
            closing = [h for g, h in pending if g == generation]
            if closing:
                header = {**header, "close": closing}
            assert self._stderr is not None and proc.stdin is not None
            self._stderr.seek(0, os.SEEK_END)
            if self._stderr.tell() > 2**20:  # keep the log small: only this request matters
                self._stderr.truncate(0)
                self._stderr.seek(0)
            start = self._stderr.tell()
            try:
                for part in _frame(header, payload):
                    proc.stdin.write(part)
                reply = json.loads(self._read(proc, timeout))
                body = self._read(proc, timeout)
            except (BrokenPipeError, EOFError, ConnectionError) as exc:
                raise self._died(proc, start) from exc
            except TimeoutError as exc:
                self._stop()
                raise RuntimeCrashError(f"LiteRT did not finish within {timeout:.0f} s; its "
                                        "worker process was stopped") from exc
            except BaseException:  # timeout, Ctrl-C, ...: the reply is lost; start afresh
                self._stop()
                raise
        if "error" in reply:
            raise LiteRTError(reply["error"], reply.get("message", ""))
        return reply, body

    def release(self, generation: int, handle: int) -> None:
        """Free a model in the worker with the next request (safe to call from a finalizer)."""
        self._closing.append((generation, handle))

    def _read(self, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        size = _LEN.unpack(_read_exact(fd, _LEN.size, timeout))[0]
        return _read_exact(fd, size, timeout)

    def _died(self, proc: subprocess.Popen[bytes], start: int) -> _WorkerDied:
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        text = b""
        if self._stderr is not None:
            self._stderr.seek(start)
            text = self._stderr.read()
        self._stop()
        phases = [ln[len(_PHASE):].decode() for ln in text.splitlines() if ln.startswith(_PHASE)]
        lines = [ln.decode(errors="replace").strip() for ln in text.splitlines()
                 if not ln.startswith(_PHASE)]
        lines = [ln for ln in lines if ln and not ln.startswith("INFO:")]
        return _WorkerDied(code, "\n".join(lines[-6:]), phases[-1] if phases else "")

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        """Stop the worker process (a new one starts on the next request)."""
        with self._lock:
            self._stop()


def _read_exact(fd: int, size: int, timeout: float) -> bytes:
    chunks: list[bytes] = []
    while size:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise TimeoutError(f"LiteRT did not answer within {timeout:.0f} s")
        chunk = os.read(fd, min(size, 2**24))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this modelconv
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


_SHARED: LiteRTWorker | None = None
_SHARED_LOCK = threading.Lock()


def shared_worker() -> LiteRTWorker:
    """The process-wide worker every :class:`LiteRTModel` uses by default."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = LiteRTWorker()
            atexit.register(_SHARED.close)
        return _SHARED


class LiteRTModel:
    """A .tflite model loaded (and its tensors allocated) in the LiteRT worker.

    Args:
        content: the flatbuffer bytes.
        path: the file it came from, for messages.
        threads: interpreter threads.
        preserve_all: keep every intermediate tensor readable (``experimental_preserve_all_
            tensors``) and run without the default delegates, so each tensor holds the
            value the builtin kernel computed.
        resize: input tensor index -> shape to resize to before allocating.
        worker: the worker to use (default: :func:`shared_worker`).
        describe: fetch :attr:`meta` (inputs, outputs, every tensor's details).
        diagnose: on a crash, find the op that crashed (off for the probes doing that).

    Raises:
        LiteRTError: the interpreter refuses the model (its message says why).
        RuntimeCrashError: the interpreter aborted or crashed on the model.
        MissingDependencyError: ai-edge-litert is not installed.
    """

    def __init__(self, content: bytes, *, path: str | None = None, threads: int = 1,
                 preserve_all: bool = False, resize: Mapping[int, Sequence[int]] | None = None,
                 worker: LiteRTWorker | None = None, describe: bool = True,
                 diagnose: bool = True, by_path: bool = False):
        self._content = content
        self.path = path
        self._params: dict[str, Any] = {
            "threads": threads, "preserve_all": preserve_all, "describe": describe,
            "resize": {str(k): list(map(int, v)) for k, v in (resize or {}).items()}}
        if by_path and path is not None:  # the worker maps the file (large models)
            self._params["model_path"] = str(path)
            diagnose = False  # finding the crashing op replays the bytes, not held here
        self._worker = worker or shared_worker()
        self._diagnose = diagnose
        self._handle = -1
        self._generation = -1
        #: interpreter details: signatures, inputs, outputs, tensors (see ``_describe``)
        self.meta: dict[str, Any] = {}
        self._load()

    def _load(self) -> None:
        try:
            reply, _ = self._worker.request({"cmd": "load", **self._params}, self._content)
        except RuntimeCrashError as exc:  # a timeout: say which file
            raise _with_path(exc, self.path) from exc
        except _WorkerDied as died:
            if not self._diagnose:
                raise
            raise _crash_error(self._content, self.path, died, None, self._params) from None
        self._handle, self._generation = int(reply["handle"]), self._worker.generation
        self.meta = reply.get("meta", {})
        weakref.finalize(self, self._worker.release, self._generation, self._handle)

    def _call(self, header: dict[str, Any], arrays: Mapping[str, np.ndarray],
              feeds_by_index: Mapping[int, np.ndarray] | None) -> tuple[dict[str, Any],
                                                                        dict[str, np.ndarray]]:
        layout, data = _pack_arrays(arrays)
        try:
            try:
                reply, body = self._worker.request(
                    {**header, "handle": self._handle, "arrays": layout}, data,
                    generation=self._generation)
            except _Stale:  # the worker was replaced (another model crashed it): reload
                self._load()
                reply, body = self._worker.request(
                    {**header, "handle": self._handle, "arrays": layout}, data,
                    generation=self._generation)
        except RuntimeCrashError as exc:
            raise _with_path(exc, self.path) from exc
        except _WorkerDied as died:
            if not self._diagnose:
                raise
            raise _crash_error(self._content, self.path, died, feeds_by_index,
                               self._params) from None
        return reply, _unpack_arrays(reply.get("arrays", []), body)

    def run_signature(self, key: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the SignatureDef ``key`` on ``feeds`` (by input name); outputs by name."""
        _, out = self._call({"cmd": "run", "signature": key}, feeds, self._feeds_by_index(feeds))
        return out

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Set the subgraph inputs in order, invoke, return the subgraph outputs in order."""
        indices = [int(d["index"]) for d in self.meta.get("inputs", [])]
        by_index = dict(zip(indices, feeds, strict=True))
        outs = self.tensors(by_index, [int(d["index"]) for d in self.meta.get("outputs", [])])
        return [outs[int(d["index"])] for d in self.meta.get("outputs", [])]

    def tensors(self, feeds: Mapping[int, np.ndarray], indices: Sequence[int]
                ) -> dict[int, np.ndarray]:
        """Set inputs by tensor index, invoke, return the tensors ``indices`` that hold data."""
        arrays = {f"t{i}": np.asarray(x) for i, x in feeds.items()}
        _, out = self._call({"cmd": "invoke", "want": [int(i) for i in indices]}, arrays, feeds)
        return {int(k[1:]): v for k, v in out.items()}

    def minmax(self, feeds: Mapping[int, np.ndarray], indices: Sequence[int]
               ) -> dict[int, tuple[float, float]]:
        """Invoke on ``feeds`` and return (min, max) of each non-empty tensor in ``indices``."""
        arrays = {f"t{i}": np.asarray(x) for i, x in feeds.items()}
        _, out = self._call({"cmd": "invoke", "want": [int(i) for i in indices],
                             "minmax": True}, arrays, feeds)
        return {int(i): (float(lo), float(hi))
                for i, lo, hi in zip(out["idx"], out["lo"], out["hi"], strict=True)}

    def _feeds_by_index(self, feeds: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
        sig = self.meta.get("signature_inputs", {})
        return {int(sig[n]["index"]): np.asarray(x) for n, x in feeds.items() if n in sig}


# --------------------------------------------------------------------------------------
# crash diagnosis


def _with_path(exc: RuntimeCrashError, path: str | None) -> RuntimeCrashError:
    return exc if exc.path or not path else RuntimeCrashError(exc.message, path=path,
                                                               hint=exc.hint)


def _crash_error(content: bytes, path: str | None, died: _WorkerDied,
                 feeds: Mapping[int, np.ndarray] | None,
                 params: Mapping[str, Any]) -> RuntimeCrashError:
    how = _SIGNALS.get(died.returncode or 0, f"exit code {died.returncode}")
    if not died.phase:  # it never got to the model: the worker itself could not start
        return RuntimeCrashError(
            f"the LiteRT worker process ended ({how}) before loading the model: "
            f"{died.stderr[-400:] or 'no message'}", path=path,
            hint="Check that `python -m modelconv.workers.litert` can import ai_edge_litert")
    phase = {"allocate": "preparing", "invoke": "running", "load": "loading"}.get(
        died.phase, "running")
    op = _first_crashing_op(content, feeds, params) if died.phase in ("allocate", "invoke") \
        else None
    what = f"op {op}" if op else "the model"
    text = f"; LiteRT printed: {died.stderr[-400:]}" if died.stderr else ""
    return RuntimeCrashError(
        f"the LiteRT interpreter crashed ({how}) while {phase} {what}{text}. It ran in a worker "
        "process, so only the worker died", path=path,
        hint="LiteRT cannot run this file; if modelconv wrote it, please report it with the "
             "op named here (its LiteRT kernel does not accept these inputs)")


def _first_crashing_op(content: bytes, feeds: Mapping[int, np.ndarray] | None,
                       params: Mapping[str, Any]) -> str | None:
    """``'#k NAME (inputs ...)'`` of the first op whose prefix model crashes, or None.

    Prefix models keep subgraph 0's operators ``0..k`` and output op k's outputs; the first
    crashing op is the smallest such k, found by binary search in a private probe worker.
    """
    try:
        from ai_edge_litert import schema_py_generated as s

        model = s.ModelT.InitFromPackedBuf(content, 0)
        ops = list(model.subgraphs[0].operators or [])
    except Exception:  # not a flatbuffer this schema reads: give up on naming the op
        return None
    if not ops:
        return None
    probe = LiteRTWorker()
    try:
        lo, hi, probes = 0, len(ops) - 1, 0  # the first crashing prefix lies in [lo, hi]
        crashed: set[int] = set()
        while lo < hi and probes < _MAX_PROBES:
            mid = (lo + hi) // 2
            probes += 1
            if _prefix_crashes(model, ops, mid, feeds, params, probe):
                hi = mid
                crashed.add(mid)
            else:
                lo = mid + 1
        if lo == hi and (lo in crashed or _prefix_crashes(model, ops, lo, feeds, params, probe)):
            return _describe_op(model, lo)
        return None  # the crash does not reproduce op by op: name no op rather than a wrong one
    finally:
        probe.close()


def _prefix_crashes(model: Any, ops: list[Any], last: int, feeds: Mapping[int, np.ndarray] | None,
                    params: Mapping[str, Any], probe: LiteRTWorker) -> bool:
    import flatbuffers

    graph = model.subgraphs[0]
    saved = graph.operators, graph.outputs, model.signatureDefs
    graph.operators = ops[:last + 1]
    graph.outputs = [int(i) for i in ops[last].outputs if i >= 0]
    model.signatureDefs = []
    try:
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        data = bytes(builder.Output())
    finally:
        graph.operators, graph.outputs, model.signatureDefs = saved
    resize = {int(i): list(np.shape(x)) for i, x in (feeds or {}).items()}
    try:
        loaded = LiteRTModel(data, threads=1, preserve_all=bool(params.get("preserve_all")),
                             resize=resize, worker=probe, describe=False, diagnose=False)
        if feeds is not None:
            inputs = {int(i) for i in graph.inputs}
            loaded.tensors({i: x for i, x in feeds.items() if i in inputs}, [])
    except _WorkerDied:
        return True
    except LiteRTError:
        return False
    return False


def _describe_op(model: Any, index: int) -> str:
    from ai_edge_litert import schema_py_generated as s

    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    op = graph.operators[index]
    code = model.operatorCodes[op.opcodeIndex]
    name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
    ins = []
    for i in op.inputs:
        if i < 0:
            continue
        t = graph.tensors[i]
        quant = t.quantization is not None and t.quantization.scale is not None and \
            len(t.quantization.scale) > 0
        shape = [int(d) for d in t.shape] if t.shape is not None else []
        ins.append(f"{types.get(t.type, t.type).lower()}{shape}{' quantized' if quant else ''}")
    out = graph.tensors[op.outputs[0]].name if len(op.outputs) and op.outputs[0] >= 0 else b""
    out_name = out.decode() if isinstance(out, bytes) else str(out)
    return f"#{index} {name} (output '{out_name}', inputs {', '.join(ins) or 'none'})"


# --------------------------------------------------------------------------------------
# worker side


def _details(d: Mapping[str, Any]) -> dict[str, Any]:
    quant = d.get("quantization", (0.0, 0))
    return {"name": d["name"], "index": int(d["index"]), "dtype": np.dtype(d["dtype"]).name,
            "shape": [int(x) for x in d["shape"]],
            "shape_signature": [int(x) for x in d.get("shape_signature", d["shape"])],
            "quantization": [float(quant[0]), int(quant[1])]}


def _describe(interp: Any) -> dict[str, Any]:
    sigs = interp.get_signature_list()
    meta: dict[str, Any] = {
        "signatures": sorted(sigs),
        "inputs": [_details(d) for d in interp.get_input_details()],
        "outputs": [_details(d) for d in interp.get_output_details()],
        "tensors": [_details(d) for d in interp.get_tensor_details()],
    }
    if "serving_default" in sigs:
        runner = interp.get_signature_runner("serving_default")
        meta["signature_inputs"] = {k: _details(v) for k, v in runner.get_input_details().items()}
        meta["signature_outputs"] = {k: _details(v)
                                     for k, v in runner.get_output_details().items()}
    return meta


def _phase(name: str) -> None:
    os.write(2, _PHASE + name.encode() + b"\n")


class _Worker:
    """Interpreters by handle, and the commands the parent sends."""

    def __init__(self) -> None:
        from ai_edge_litert import interpreter as lite

        self.lite = lite
        self.models: dict[int, tuple[Any, bytes, dict[str, Any]]] = {}
        self.next = 0

    def handle(self, header: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
        for h in header.get("close", []):
            self.models.pop(int(h), None)
        cmd = header["cmd"]
        if cmd == "load":
            return self.load(header, payload)
        if int(header["handle"]) not in self.models:
            raise ValueError(f"no model loaded as handle {header['handle']}")
        interp, _, cache = self.models[int(header["handle"])]
        feeds = _unpack_arrays(header.get("arrays", []), payload)
        if cmd == "run":
            key = header["signature"]
            if key not in cache:
                cache[key] = interp.get_signature_runner(key)
            _phase("invoke")
            outs = _pack_arrays(cache[key](**feeds))
        elif cmd == "invoke":
            outs = self.invoke(interp, header, feeds, cache.setdefault("shapes", {}))
        else:
            raise ValueError(f"unknown command {cmd!r}")
        return {"arrays": outs[0]}, outs[1]

    def load(self, header: dict[str, Any], content: bytes) -> tuple[dict[str, Any], bytes]:
        kwargs: dict[str, Any] = {"num_threads": int(header.get("threads", 1))}
        if header.get("preserve_all"):
            kwargs["experimental_preserve_all_tensors"] = True
            kwargs["experimental_op_resolver_type"] = \
                self.lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        _phase("load")
        path = header.get("model_path")
        interp = (self.lite.Interpreter(model_path=str(path), **kwargs) if path
                  else self.lite.Interpreter(model_content=content, **kwargs))
        for index, shape in header.get("resize", {}).items():
            interp.resize_tensor_input(int(index), shape)
        _phase("allocate")
        interp.allocate_tensors()
        self.next += 1
        self.models[self.next] = (interp, content, {})
        reply: dict[str, Any] = {"handle": self.next}
        if header.get("describe", True):
            reply["meta"] = _describe(interp)
        return reply, b""

    def invoke(self, interp: Any, header: dict[str, Any], feeds: dict[str, np.ndarray],
               shapes: dict[int, tuple[int, ...]]) -> tuple[list[Any], bytes]:
        resized = False
        for key, x in feeds.items():
            index = int(key[1:])
            if index not in shapes:
                shapes[index] = tuple(interp.get_tensor(index).shape)
            if shapes[index] != x.shape:
                interp.resize_tensor_input(index, list(x.shape))
                shapes[index] = x.shape
                resized = True
        if resized:
            _phase("allocate")
            interp.allocate_tensors()
        for key, x in feeds.items():
            interp.set_tensor(int(key[1:]), x)
        _phase("invoke")
        interp.invoke()
        out: dict[str, np.ndarray] = {}
        stats: list[tuple[int, float, float]] = []
        for i in header.get("want", []):
            try:
                value = np.array(interp.get_tensor(int(i)))
            except ValueError:  # a tensor without data (optional, or freed)
                continue
            if not header.get("minmax"):
                out[f"t{i}"] = value
            elif value.size:
                # the finite range: a mask's -inf or a masked-out lane's NaN saturates in
                # int8 and must not become the scale (NaN would make every value NaN)
                finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
                if finite.size:
                    stats.append((int(i), float(np.min(finite)), float(np.max(finite))))
        if header.get("minmax"):
            out = {"idx": np.array([s[0] for s in stats], np.int64),
                   "lo": np.array([s[1] for s in stats], np.float64),
                   "hi": np.array([s[2] for s in stats], np.float64)}
        return _pack_arrays(out)


def _serve() -> None:
    """Worker main loop: answer requests until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # whatever the runtime prints goes to stderr, never into the protocol
    inp = sys.stdin.buffer
    worker = _Worker()
    while True:
        head = inp.read(_LEN.size)
        if len(head) < _LEN.size:
            return
        header = json.loads(inp.read(_LEN.unpack(head)[0]))
        payload = inp.read(_LEN.unpack(inp.read(_LEN.size))[0])
        try:
            reply, body = worker.handle(header, payload)
        except Exception as exc:  # the interpreter's own errors go back to the parent
            reply, body = {"error": type(exc).__name__, "message": str(exc)[:2000]}, b""
        for part in _frame(reply, body):
            out.write(part)


if __name__ == "__main__":
    _serve()
