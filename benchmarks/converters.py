"""Child-side converter calls: modelconv and every anchor, one function per converter key.

Each function gets a :class:`Job`, does its untimed setup (building the architecture of a
torch model is code, the same for every converter), and returns the output path plus the
seconds of the timed converter call: reading the source file, converting, writing the output.
A missing anchor package raises :class:`Unavailable` (reported as "unavailable: ...").
"""

from __future__ import annotations

import importlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.zoo import CachePaths, ModelSpec

OPSET = 18  # asked of the anchors that take an opset; modelconv uses its own default


class Unavailable(Exception):
    """The converter cannot run in this interpreter (its package is missing)."""


@dataclass
class Job:
    """What one conversion subprocess does."""

    source: str  # torch / keras / savedmodel / tfkeras-savedmodel / onnx
    target: str  # onnx / tflite
    converter: str
    spec: ModelSpec
    paths: CachePaths
    out_dir: Path
    python: str
    modelconv_verify: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> Path:
        """The file the converter writes."""
        return self.out_dir / f"model.{self.target}"


@dataclass
class Outcome:
    """The timed converter call's result."""

    output: Path
    convert_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def need(module: str, why: str = "") -> Any:
    """Import ``module`` or raise :class:`Unavailable` naming it."""
    try:
        return importlib.import_module(module)
    except Exception as exc:
        raise Unavailable(f"{module} is not importable here ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120] if str(exc) else ''}){why}") from exc


#: set by ``benchmarks profile``: profiles the timed converter call only (not the setup)
PROFILER: Any = None


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    if PROFILER is not None:
        PROFILER.enable()
    start = time.perf_counter()
    try:
        value = fn()
    finally:
        secs = time.perf_counter() - start
        if PROFILER is not None:
            PROFILER.disable()
    return value, secs


# --- torch sources ---------------------------------------------------------------------------

def _torch_setup(job: Job) -> tuple[Any, tuple[Any, ...]]:
    import torch

    from benchmarks.zoo_torch import build_module

    module, impl = build_module(job.spec, empty=True)
    job.extra["impl"] = impl
    with np.load(job.paths.inputs) as data:
        args = tuple(torch.from_numpy(data[i.name]) for i in job.spec.inputs)
    return module, args


def _load_weights(module: Any, path: Path) -> Any:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)))
    return module


def _torch_modelconv(job: Job) -> Outcome:
    module, _ = _torch_setup(job)
    import modelconv
    import modelconv.api

    def call() -> Any:
        return modelconv.convert(
            job.paths.torch_weights, job.output, model=module, verify=job.modelconv_verify,
            overwrite=True, input_shapes=[i.shape for i in job.spec.inputs],
            input_dtypes=[i.dtype for i in job.spec.inputs])

    result, secs = _timed(call)
    return Outcome(job.output, secs, _modelconv_extra(result, job))


def _torch_onnx(job: Job, dynamo: bool) -> Outcome:
    if dynamo:
        need("onnxscript", " (torch.onnx.export(dynamo=True) needs onnxscript)")
    module, args = _torch_setup(job)
    import torch

    names = [i.name for i in job.spec.inputs]

    def call() -> None:
        _load_weights(module, job.paths.torch_weights)
        with torch.no_grad():
            torch.onnx.export(module, args, str(job.output), dynamo=dynamo, input_names=names,
                              output_names=["out0"], opset_version=OPSET if dynamo else 17)

    _, secs = _timed(call)
    return Outcome(job.output, secs, {"torch": torch.__version__})


def _litert_torch(job: Job) -> Outcome:
    litert_torch = need("litert_torch", "; run benchmarks/setup_env.sh and pass --python")
    module, args = _torch_setup(job)

    def call() -> None:
        _load_weights(module, job.paths.torch_weights)
        litert_torch.convert(module, args).export(str(job.output))

    _, secs = _timed(call)
    return Outcome(job.output, secs, {"litert_torch": getattr(litert_torch, "__version__", "")})


# --- keras / SavedModel sources -------------------------------------------------------------

def _source_file(job: Job) -> Path:
    return {"keras": job.paths.keras_file, "savedmodel": job.paths.savedmodel,
            "tfkeras-savedmodel": job.paths.tfkeras_savedmodel,
            "onnx": job.paths.onnx_file}[job.source]


def _file_modelconv(job: Job) -> Outcome:
    import modelconv
    import modelconv.api

    src = _source_file(job)
    result, secs = _timed(lambda: modelconv.convert(
        src, job.output, verify=job.modelconv_verify, overwrite=True))
    return Outcome(job.output, secs, _modelconv_extra(result, job))


def _keras_signature(job: Job) -> tuple[Any, ...]:
    import tensorflow as tf

    return tuple(tf.TensorSpec((None, *i.shape[1:]), tf.as_dtype(i.dtype), name=i.name)
                 for i in job.spec.inputs)


def _tf2onnx_keras(job: Job) -> Outcome:
    tf2onnx = need("tf2onnx")
    keras = need("keras")

    def call() -> None:
        model = keras.saving.load_model(str(job.paths.keras_file), compile=False)
        tf2onnx.convert.from_keras(model, input_signature=_keras_signature(job), opset=OPSET,
                                   output_path=str(job.output))

    _, secs = _timed(call)
    return Outcome(job.output, secs, {"tf2onnx": tf2onnx.__version__})


def _tf2onnx_cli(job: Job) -> Outcome:
    need("tf2onnx")
    cmd = [job.python, "-m", "tf2onnx.convert", "--saved-model", str(_source_file(job)),
           "--output", str(job.output), "--opset", str(OPSET)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    secs = time.perf_counter() - start
    if proc.returncode != 0 or not job.output.exists():
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["?"]
        raise RuntimeError(f"tf2onnx CLI exited {proc.returncode}: {tail[0][:200]}")
    return Outcome(job.output, secs, {"via": "subprocess (RSS is the CLI process's)"})


def _tflite_keras(job: Job) -> Outcome:
    tf = need("tensorflow")
    keras = need("keras")

    def call() -> None:
        model = keras.saving.load_model(str(job.paths.keras_file), compile=False)
        job.output.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    _, secs = _timed(call)
    return Outcome(job.output, secs, {"tensorflow": tf.__version__})


def _tflite_savedmodel(job: Job) -> Outcome:
    tf = need("tensorflow")

    def call() -> None:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(job.paths.savedmodel))
        job.output.write_bytes(conv.convert())

    _, secs = _timed(call)
    return Outcome(job.output, secs, {"tensorflow": tf.__version__})


def _onnx_roundtrip(job: Job) -> Outcome:
    import onnx

    def call() -> None:
        onnx.save(onnx.load(str(job.paths.onnx_file)), str(job.output))

    _, secs = _timed(call)
    return Outcome(job.output, secs, {"onnx": onnx.__version__})


def _modelconv_extra(result: Any, job: Job) -> dict[str, Any]:
    report = getattr(result, "report", None)
    extra: dict[str, Any] = {
        "timings": {k: round(float(v), 4) for k, v in dict(result.timings).items()},
        "warnings": len(result.warnings), "outputs": [str(p) for p in result.outputs],
        "verified": bool(job.modelconv_verify and report is not None and not report.skipped),
    }
    if report is not None and hasattr(report, "summary"):
        extra["report"] = str(report.summary())[:300]
    return extra


def run_job(job: Job) -> Outcome:
    """Run the converter of ``job`` (timed call inside); raises on failure."""
    job.out_dir.mkdir(parents=True, exist_ok=True)
    key = job.converter
    if key == "modelconv":
        fn: Callable[[Job], Outcome] = (_torch_modelconv if job.source == "torch"
                                        else _file_modelconv)
    else:
        table: dict[str, Callable[[Job], Outcome]] = {
            "torch-dynamo": lambda j: _torch_onnx(j, dynamo=True),
            "torch-script": lambda j: _torch_onnx(j, dynamo=False),
            "litert-torch": _litert_torch,
            "tf2onnx-keras": _tf2onnx_keras,
            "tf2onnx-cli": _tf2onnx_cli,
            "tflite-keras": _tflite_keras,
            "tflite-savedmodel": _tflite_savedmodel,
            "onnx-roundtrip": _onnx_roundtrip,
        }
        fn = table[key]
    outcome = fn(job)
    outcome.extra.update(job.extra)
    if not outcome.output.exists():
        raise RuntimeError(f"the converter returned but wrote no {outcome.output.name}")
    return outcome
