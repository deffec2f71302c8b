"""TensorFlow-side runners. TensorFlow only ever runs in a worker subprocess
(``python -m modelconv.verification.runners_tf``) whose KERAS_BACKEND is tensorflow: importing
TensorFlow next to Keras-on-torch crashed here.

Worker jobs: ``keras2`` (run a tf.keras .h5 with tf_keras), ``savedmodel`` (run a
signature), ``tf2onnx`` (convert a SavedModel signature; used by the importer).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import (
    MissingDependencyError,
    ModelconvError,
    ModelLoadError,
    RunnerUnavailableError,
)
from modelconv.ir.info import TensorSpec

WORKER_TIMEOUT = 900.0


def tf_available() -> bool:
    """True when tensorflow is importable (checked without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


def worker_env() -> dict[str, str]:
    """Environment for the TensorFlow worker process."""
    env = dict(os.environ)
    env.update({"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
                "CUDA_VISIBLE_DEVICES": "", "TF_ENABLE_ONEDNN_OPTS": "0",
                "PYTHONHASHSEED": "0"})
    return env


def run_worker(job: str, path: str, feeds: Sequence[np.ndarray] | None = None,
               **params: Any) -> dict[str, np.ndarray]:
    """Run ``job`` on ``path`` in the TensorFlow worker; returns its arrays (``out<i>``;
    ``s<j>_out<i>`` for sample ``j`` when ``samples=N`` passes N samples' feeds in a row)."""
    if not tf_available():
        raise MissingDependencyError("tensorflow", "tf", f"Running '{job}'")
    with tempfile.TemporaryDirectory(prefix="modelconv-tf-") as tmp:
        feeds_path = os.path.join(tmp, "feeds.npz")
        np.savez(feeds_path, *(feeds or []))
        out_path = os.path.join(tmp, "out.npz")
        spec = {"job": job, "path": path, "feeds": feeds_path, "out": out_path, **params}
        proc = subprocess.run(
            [sys.executable, "-m", "modelconv.verification.runners_tf", json.dumps(spec)],
            env=worker_env(), capture_output=True, text=True, timeout=WORKER_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0 or not os.path.exists(out_path):
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            err = next((ln for ln in reversed(lines) if ln.startswith("MODELCONV:")),
                       lines[-1] if lines else f"exit code {proc.returncode}")
            err = err.removeprefix("MODELCONV:").strip()
            if err.startswith(f"{RunnerUnavailableError.__name__}:"):
                raise RunnerUnavailableError(err.split(":", 1)[1].strip()[:500], path=path)
            raise ModelLoadError(f"TensorFlow worker failed ({job}): {err[:500]}", path=path)
        with np.load(out_path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


class TFSavedModelRunner:
    """Runs a SavedModel signature in the TensorFlow worker."""

    name = "tensorflow"

    def __init__(self, path: str | os.PathLike[str], signature: str = "serving_default",
                 specs: list[TensorSpec] | None = None, outputs: list[str] | None = None):
        self.path = str(Path(path))
        self.signature = signature
        self._specs = specs
        self._outputs = outputs

    def _describe(self) -> None:
        info = run_worker("describe", self.path, signature=self.signature)
        meta = json.loads(bytes(info["meta"]).decode())
        self._specs = [TensorSpec(n, d, tuple(s)) for n, d, s in meta["inputs"]]
        self._outputs = list(meta["outputs"])

    def input_specs(self) -> list[TensorSpec]:
        """Signature inputs (sorted by name, as tf2onnx orders them)."""
        if self._specs is None:
            self._describe()
        return list(self._specs or [])

    def output_names(self) -> list[str]:
        """Signature output keys (sorted)."""
        if self._outputs is None:
            self._describe()
        return list(self._outputs or [])

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs for positional ``feeds``."""
        names = [s.name for s in self.input_specs()]
        result = run_worker("savedmodel", self.path, list(feeds), signature=self.signature,
                            names=names)
        return [result[f"out{i}"] for i in range(len(self.output_names()))]

    def run_many(self, samples: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
        """Outputs for several samples in one worker process (TensorFlow starts once)."""
        names = [s.name for s in self.input_specs()]
        flat = [np.asarray(f) for sample in samples for f in sample]
        result = run_worker("savedmodel", self.path, flat, signature=self.signature,
                            names=names, samples=len(samples))
        return per_sample(result, len(samples), len(self.output_names()))


def per_sample(result: dict[str, np.ndarray], samples: int,
               outputs: int) -> list[list[np.ndarray]]:
    """A ``samples=N`` worker result as one list of outputs per sample."""
    return [[result[f"s{j}_out{i}"] for i in range(outputs)] for j in range(samples)]


def _split_feeds(spec: dict[str, Any], feeds: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Worker side: the feeds of each sample (``samples`` samples in a row, or one)."""
    count = int(spec.get("samples", 0))
    if not count:
        return [feeds]
    per = len(feeds) // count
    return [feeds[j * per:(j + 1) * per] for j in range(count)]


def _keyed(spec: dict[str, Any], j: int, outs: Sequence[Any]) -> dict[str, np.ndarray]:
    prefix = f"s{j}_" if spec.get("samples") else ""
    return {f"{prefix}out{i}": np.asarray(o) for i, o in enumerate(outs)}


# --------------------------------------------------------------------------------------
# worker side (runs with TensorFlow imported)


def _load_feeds(path: str) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _job_keras2(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras

    from modelconv.verification.runners_keras import application_layers

    try:
        model = tf_keras.models.load_model(spec["path"], compile=False,
                                           custom_objects=application_layers("tf_keras"))
    except Exception as exc:  # tf_keras raises many exception types on load
        raise RunnerUnavailableError(
            f"tf_keras {tf_keras.__version__} cannot load this file to run it: {exc}") from exc
    result: dict[str, np.ndarray] = {}
    for j, feeds in enumerate(_split_feeds(spec, _load_feeds(spec["feeds"]))):
        outs = model(feeds if len(feeds) > 1 else feeds[0], training=False)
        result.update(_keyed(spec, j, outs if isinstance(outs, list | tuple) else [outs]))
    return result


def _signature(spec: dict[str, Any]) -> Any:
    import tensorflow as tf

    loaded = tf.saved_model.load(spec["path"])
    sigs = loaded.signatures
    name = spec.get("signature") or "serving_default"
    if name not in sigs:
        raise ModelconvError(f"SavedModel has no signature '{name}' (has: {sorted(sigs)})")
    return loaded, sigs[name]


def _job_describe(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    _, fn = _signature(spec)
    inputs = fn.structured_input_signature[1]
    meta = {
        "inputs": [[k, inputs[k].dtype.name, [d if d is not None else None
                                             for d in inputs[k].shape.as_list()]]
                   for k in sorted(inputs)],
        "outputs": sorted(fn.structured_outputs),
    }
    return {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}


def _job_savedmodel(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    _, fn = _signature(spec)
    result: dict[str, np.ndarray] = {}
    for j, feeds in enumerate(_split_feeds(spec, _load_feeds(spec["feeds"]))):
        kwargs = {n: tf.constant(v) for n, v in zip(spec["names"], feeds, strict=True)}
        outs = fn(**kwargs)
        result.update(_keyed(spec, j, [outs[k] for k in sorted(outs)]))
    return result


def _worker_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    jobs = {"keras2": _job_keras2, "describe": _job_describe, "savedmodel": _job_savedmodel}
    if spec["job"] == "tf2onnx":
        from modelconv.importers.savedmodel import tf2onnx_job

        jobs["tf2onnx"] = tf2onnx_job
    try:
        result = jobs[spec["job"]](spec)
    except Exception as exc:
        msg = " ".join(str(exc).split())[:800]
        print(f"MODELCONV: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 1
    np.savez(spec["out"], **result)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
