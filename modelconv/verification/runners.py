"""Runners execute a model on numpy inputs. Inputs and outputs are matched by position.

Each runner may also expose intermediate tensors for divergence localisation:
``intermediates(feeds, names)`` returns ``{name: array}`` for the names it can see.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelconv.errors import ModelLoadError
from modelconv.ir.info import TensorSpec


@runtime_checkable
class Runner(Protocol):
    """Anything that can run a model for verification."""

    name: str  # e.g. "onnxruntime", "torch", "keras", "litert"

    def input_specs(self) -> list[TensorSpec]:
        """The model's inputs in order."""
        ...

    def output_names(self) -> list[str]:
        """The model's outputs in order."""
        ...

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs for positional ``feeds``."""
        ...


class OnnxRuntimeRunner:
    """Runs an ONNX model with onnxruntime on the CPU, single-threaded for determinism."""

    name = "onnxruntime"

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        threads: int = 1,
        aliases: dict[str, str] | None = None,
    ):
        import onnxruntime as ort

        self._model = model
        #: layer (source) name -> tensor name, so intermediates can be asked by layer
        self.aliases = aliases or {}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # ORT maps external data from the file, but pre-packing copies every MatMul weight
        # into anonymous memory (a 2 GiB model: +2 GiB); a verification run few times
        # gains nothing from it, so weights stay in the file's pages
        opts.add_session_config_entry("session.disable_prepacking", "1")
        self._opts = opts
        self._proto: Any = None  # parsed on the first intermediates() call
        self._computed: set[str] = set()
        try:
            source = model if isinstance(model, bytes) else str(model)
            self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types
            where = None if isinstance(model, bytes) else str(model)
            raise ModelLoadError(
                f"onnxruntime cannot load the model: {_first_line(exc)}", path=where
            ) from exc

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], options: Any = None) -> OnnxRuntimeRunner:
        """Runner for an .onnx file."""
        return cls(Path(path))

    def input_specs(self) -> list[TensorSpec]:
        """Inputs from the session metadata."""
        return [
            TensorSpec(i.name, _ort_dtype(i.type), tuple(_dim(d) for d in i.shape))
            for i in self.session.get_inputs()
        ]

    def output_names(self) -> list[str]:
        """Output names from the session metadata."""
        return [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run and return the outputs in order."""
        names = [i.name for i in self.session.get_inputs()]
        outs = self.session.run(None, dict(zip(names, feeds, strict=True)))
        return [np.asarray(o) for o in outs]

    def intermediates(self, feeds: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, Any]:
        """Values of ``names`` (tensor names or aliased layer names) as extra outputs.

        Names that are no tensor a node computes are skipped (asking onnxruntime for them
        would make the model invalid). The model is parsed once; each call marks only the
        tensors it asks for, so callers bound memory by asking in batches.
        """
        import onnx
        import onnxruntime as ort

        if self._proto is None:
            self._proto = (onnx.load_from_string(self._model) if isinstance(self._model, bytes)
                           else onnx.load(str(self._model)))
            self._computed = {o for n in self._proto.graph.node for o in n.output if o}
        proto = self._proto
        existing = {o.name for o in proto.graph.output}
        tensors = {n: self.aliases.get(n, n) for n in names}
        tensors = {n: t for n, t in tensors.items() if t in self._computed}
        added = [t for t in dict.fromkeys(tensors.values()) if t not in existing]
        for t in added:
            proto.graph.output.append(onnx.ValueInfoProto(name=t))
        try:
            data = proto.SerializeToString()
        finally:
            del proto.graph.output[len(proto.graph.output) - len(added):]
        session = ort.InferenceSession(data, self._opts, providers=["CPUExecutionProvider"])
        del data
        input_names = [i.name for i in session.get_inputs()]
        out_names = [o.name for o in session.get_outputs()]
        values = dict(zip(out_names, session.run(None, dict(zip(input_names, feeds, strict=True))),
                          strict=True))
        return {n: values[t] for n, t in tensors.items() if t in values}


def _dim(d: Any) -> int | str | None:
    return d if isinstance(d, int) else (str(d) if d is not None else None)


_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16", "tensor(int64)": "int64", "tensor(int32)": "int32",
    "tensor(int16)": "int16", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16", "tensor(uint32)": "uint32", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool", "tensor(string)": "str",
}


def _ort_dtype(type_str: str) -> str:
    return _ORT_TYPES.get(type_str, type_str)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__
