"""TensorFlow-side runners. TensorFlow only ever runs in the worker subprocess of
:mod:`modelconv.workers.tf_worker`, which imports the jobs below by name: ``keras2`` (run a
tf.keras .h5 with tf_keras), ``describe`` and ``savedmodel`` (describe/run a signature).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import ModelconvError, RunnerUnavailableError
from modelconv.ir.info import TensorSpec
from modelconv.workers.tf_worker import load_feeds, run_worker


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


# --------------------------------------------------------------------------------------
# worker side (runs with TensorFlow imported)


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
    feeds = load_feeds(spec["feeds"])
    outs = model(feeds if len(feeds) > 1 else feeds[0], training=False)
    if not isinstance(outs, list | tuple):
        outs = [outs]
    return {f"out{i}": np.asarray(o) for i, o in enumerate(outs)}


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
    feeds = load_feeds(spec["feeds"])
    kwargs = {n: tf.constant(v) for n, v in zip(spec["names"], feeds, strict=True)}
    outs = fn(**kwargs)
    return {f"out{i}": np.asarray(outs[k]) for i, k in enumerate(sorted(outs))}
