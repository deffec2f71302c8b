"""KerasRunner: runs the *source* Keras model for verification.

- Keras 3 files (.keras and Keras 3 .h5) run in-process with Keras 3 on the torch backend
  (``KERAS_BACKEND=torch`` is set before keras is first imported; ``safe_mode=True``).
- Keras 2 (tf.keras) .h5 files run with tf_keras in a worker subprocess whose
  KERAS_BACKEND is tensorflow (TensorFlow must not be imported next to Keras-on-torch).

A legacy .h5 names keras.applications' own layers (ConvNeXt's LayerScale) by class only;
both runtimes get those classes from the installed library (:data:`APPLICATION_LAYERS`).
When Keras cannot load a file that modelconv converted, :class:`RunnerUnavailableError`
says why and verification is skipped rather than the conversion failing.

Input/output specs come from the model config (h5py/json), so asking for them never
imports a framework.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import MissingDependencyError, RunnerUnavailableError
from modelconv.ir.info import TensorSpec

#: layers that keras.applications define in their own modules (not registered with Keras'
#: legacy-h5 deserializer): class name -> module below ``keras.src`` / ``tf_keras.src``
APPLICATION_LAYERS = {
    "LayerScale": "applications.convnext",
    "StochasticDepth": "applications.convnext",
}


def _specs_from_file(path: str) -> tuple[list[TensorSpec], list[str], int]:
    from modelconv.importers.keras.config import parse_model
    from modelconv.importers.keras.convert import check_layers, dtype_name
    from modelconv.importers.keras.reader import open_keras_file

    with open_keras_file(path) as kf:
        graph = parse_model(kf.config)
        check_layers(graph, path)  # never hand a Lambda/custom layer to Keras
        major = kf.major
    specs = []
    for ref in graph.inputs:
        cfg = graph.layer(ref.layer).config
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape") or []
        dims = tuple(int(d) if d is not None else ("batch" if i == 0 else None)
                     for i, d in enumerate(shape))
        specs.append(TensorSpec(ref.layer, dtype_name(cfg.get("dtype")), dims))
    return specs, [r.layer for r in graph.outputs], major


@contextlib.contextmanager
def _tensorflow_hidden() -> Iterator[None]:
    """Make ``import tensorflow`` fail while Keras loads a file, unless it is already loaded.

    Keras' legacy-.h5 config decoder probes for TensorFlow when it is installed; importing
    it beside Keras-on-torch costs seconds and crashed this process with the CUDA torch
    build. ``sys.modules[name] = None`` is Python's documented way to block an import.
    """
    import sys

    if "tensorflow" in sys.modules:
        yield
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]
        _forget_tensorflow_probe()


def _forget_tensorflow_probe() -> None:
    """Keras caches whether TensorFlow imports (``module_utils.tensorflow``): a probe made
    while it was hidden must not outlive the hiding, or the caller's own Keras layers that
    need TensorFlow (IntegerLookup, StringLookup...) would fail later in the process."""
    import sys

    utils = sys.modules.get("keras.src.utils.module_utils")
    probe = getattr(utils, "tensorflow", None)
    if probe is not None and getattr(probe, "module", None) is None:
        probe._available = None


def application_layers(package: str) -> dict[str, type]:
    """``custom_objects`` for :data:`APPLICATION_LAYERS`, taken from ``package`` ("keras" or
    "tf_keras") itself: library code, never the model file's.

    A .keras file names their module, but a legacy .h5 file only their class name, so
    Keras cannot load an h5 ConvNeXt without them ("Unknown layer: 'LayerScale'").
    """
    import importlib

    found: dict[str, type] = {}
    for name, module in APPLICATION_LAYERS.items():
        try:
            cls = getattr(importlib.import_module(f"{package}.src.{module}"), name, None)
        except ImportError:
            continue
        if isinstance(cls, type):
            found[name] = cls
    return found


def load_keras3(path: str) -> Any:
    """Load a Keras 3 model in this process (torch backend unless keras is already loaded)."""
    import sys

    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as exc:
        raise MissingDependencyError("keras", "keras", "Running Keras models") from exc
    try:
        with _tensorflow_hidden():
            return keras.saving.load_model(path, compile=False, safe_mode=True,
                                           custom_objects=application_layers("keras"))
    except Exception as exc:  # keras raises many exception types on load
        # modelconv read the file already: this is a limit of Keras' loader (e.g. a Keras 3
        # .h5 whose config calls ops such as `x + y` that the legacy loader takes for layers)
        raise RunnerUnavailableError(
            f"Keras {keras.__version__} cannot load this file to run it: "
            f"{' '.join(str(exc).split())[:300]}", path=path) from exc


def per_sample(result: dict[str, np.ndarray], samples: int,
               outputs: int) -> list[list[np.ndarray]]:
    """A ``samples=N`` TensorFlow worker result (``s<j>_out<i>``) as one list of outputs
    per sample."""
    return [[result[f"s{j}_out{i}"] for i in range(outputs)] for j in range(samples)]


class KerasRunner:
    """Runs a Keras model file (see module docstring for which runtime)."""

    name = "keras"

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(Path(path))
        self._specs, self._outputs, self.major = _specs_from_file(self.path)
        self._model: Any = None

    def input_specs(self) -> list[TensorSpec]:
        """Inputs from the model config."""
        return list(self._specs)

    def output_names(self) -> list[str]:
        """Output layer names from the model config."""
        return list(self._outputs)

    def _keras3(self) -> Any:
        if self._model is None:
            self._model = load_keras3(self.path)
        return self._model

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs for positional ``feeds``."""
        if self.major == 2:
            from modelconv.workers.tf_worker import run_worker

            result = run_worker("keras2", self.path, list(feeds))
            return [result[f"out{i}"] for i in range(len(self._outputs))]
        return self._call(self._keras3(), feeds)

    def run_many(self, samples: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
        """Outputs for several samples; a Keras 2 file runs them in one worker process."""
        if self.major != 2:
            return [self.run(feeds) for feeds in samples]
        from modelconv.workers.tf_worker import run_worker

        flat = [np.asarray(f) for sample in samples for f in sample]
        result = run_worker("keras2", self.path, flat, samples=len(samples))
        return per_sample(result, len(samples), len(self._outputs))

    @staticmethod
    def _call(model: Any, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        import keras

        inputs: Any = list(feeds) if len(feeds) > 1 else feeds[0]
        outs = model(inputs, training=False)
        if isinstance(outs, dict):
            outs = list(outs.values())
        if not isinstance(outs, list | tuple):
            outs = [outs]
        return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outs]

    def intermediates(self, feeds: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, Any]:
        """Outputs of the named top-level layers (Keras 3 files; single-call layers)."""
        if self.major == 2:
            return {}
        import keras

        model = self._keras3()
        wanted, tensors = [], []
        for name in names:
            try:
                layer = model.get_layer(name.split("/")[0] if "/" not in name else name)
                out = layer.output
            except (ValueError, AttributeError):
                continue
            if isinstance(out, list | tuple):
                out = out[0]
            wanted.append(name)
            tensors.append(out)
        if not tensors:
            return {}
        probe = keras.Model(model.inputs, tensors)
        values = self._call(probe, feeds)
        return dict(zip(wanted, values, strict=True))
