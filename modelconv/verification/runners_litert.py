"""LiteRTRunner: runs a .tflite file with ``ai_edge_litert``'s interpreter (1 thread).

Inputs and outputs follow the model's ``serving_default`` SignatureDef order (as written by
the modelconv exporter: the source model's order). For models with int8 I/O, float feeds
are quantized and int8 outputs dequantized with the tensors' own parameters, so results
compare directly with the float source. :meth:`LiteRTRunner.intermediates` returns
dequantized float values keyed by tensor name (the exporter names tensors after IR
values); 4-D tensors inside a converted CNN are stored channels-last (NHWC).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import MissingDependencyError, ModelLoadError
from modelconv.ir.info import TensorSpec


def _interpreter_module() -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("ai-edge-litert", "tflite", "Running .tflite models") from exc
    return interpreter


class LiteRTRunner:
    """Runs a TFLite flatbuffer on the CPU, single-threaded for determinism."""

    name = "litert"

    def __init__(self, model: str | os.PathLike[str] | bytes, threads: int = 1):
        self._content = model if isinstance(model, bytes) else Path(model).read_bytes()
        self._path = None if isinstance(model, bytes) else str(model)
        self._threads = threads
        lite = _interpreter_module()
        try:
            self.interpreter = lite.Interpreter(model_content=self._content, num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"LiteRT cannot load the model: {exc}", path=self._path) from exc
        self._inputs, self._outputs = _signature(self._content)
        details = {d["name"]: d for d in self.interpreter.get_tensor_details()}
        if not self._inputs:  # no SignatureDef: fall back to subgraph order
            self._inputs = [d["name"] for d in self.interpreter.get_input_details()]
            self._outputs = [d["name"] for d in self.interpreter.get_output_details()]
        self._details = details

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], options: Any = None) -> LiteRTRunner:
        """Runner for a .tflite file (``options`` is accepted for the formats contract)."""
        return cls(Path(path))

    def input_specs(self) -> list[TensorSpec]:
        """Inputs in SignatureDef order (dynamic dims from shape_signature are None)."""
        runner = self.interpreter.get_signature_runner("serving_default") if self._has_sig() \
            else None
        specs = []
        by_name = runner.get_input_details() if runner is not None else {}
        for name in self._inputs:
            d = by_name.get(name) or self._details[name]
            sig = d.get("shape_signature", d["shape"])
            dims = tuple(None if int(s) < 0 else int(s) for s in sig)
            specs.append(TensorSpec(name, np.dtype(d["dtype"]).name, dims))
        return specs

    def output_names(self) -> list[str]:
        """Outputs in SignatureDef order."""
        return list(self._outputs)

    def _has_sig(self) -> bool:
        return "serving_default" in self.interpreter.get_signature_list()

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run with positional ``feeds``; outputs in SignatureDef order."""
        if not self._has_sig():
            for d, x in zip(self.interpreter.get_input_details(), feeds, strict=True):
                self.interpreter.set_tensor(d["index"], _to_input(x, d))
            self.interpreter.invoke()
            return [_from_output(np.array(self.interpreter.get_tensor(d["index"])), d)
                    for d in self.interpreter.get_output_details()]
        runner = self.interpreter.get_signature_runner("serving_default")
        details = runner.get_input_details()
        kwargs = {n: _to_input(x, details[n]) for n, x in zip(self._inputs, feeds, strict=True)}
        outs = runner(**kwargs)
        out_details = runner.get_output_details()
        return [_from_output(np.array(outs[n]), out_details[n]) for n in self._outputs]

    def intermediates(self, feeds: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, Any]:
        """Float values of the tensors called ``names`` (quantized ones are dequantized)."""
        lite = _interpreter_module()
        interp = lite.Interpreter(
            model_content=self._content, num_threads=self._threads,
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interp.allocate_tensors()
        by_name = {d["name"]: d for d in interp.get_tensor_details()}
        for name, x in zip(self._inputs, feeds, strict=True):
            d = by_name[name]
            interp.set_tensor(d["index"], _to_input(x, d))
        interp.invoke()
        result: dict[str, Any] = {}
        for name in names:
            d = by_name.get(name)
            if d is None:
                continue
            try:
                value = np.array(interp.get_tensor(d["index"]))
            except ValueError:  # tensor without data (e.g. optional)
                continue
            scale, zero = d.get("quantization", (0.0, 0))
            if scale and value.dtype in (np.int8, np.uint8, np.int16):
                value = (value.astype(np.float32) - zero) * scale
            result[name] = value
        return result


def _to_input(x: Any, detail: dict[str, Any]) -> np.ndarray:
    """Feed for an input; float data for an int8 input (``int8_io``) is quantized."""
    arr = np.asarray(x)
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype.kind in "iu" and arr.dtype.kind == "f" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(arr / scale) + zero, info.min, info.max).astype(dtype)
    return arr.astype(dtype, copy=False)


def _from_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Output as float: quantized outputs (``int8_io``) are dequantized."""
    scale, zero = detail.get("quantization", (0.0, 0))
    if y.dtype in (np.int8, np.uint8, np.int16) and scale:
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y


def _signature(content: bytes) -> tuple[list[str], list[str]]:
    """Input and output names of the serving_default SignatureDef, in file order."""
    from ai_edge_litert import schema_py_generated as s

    model = s.Model.GetRootAs(content, 0)
    for k in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(k)
        key = sig.SignatureKey()
        if key is not None and key.decode() != "serving_default":
            continue
        ins = [sig.Inputs(i).Name().decode() for i in range(sig.InputsLength())]
        outs = [sig.Outputs(i).Name().decode() for i in range(sig.OutputsLength())]
        return ins, outs
    return [], []
