"""LiteRTRunner: runs a .tflite file with ``ai_edge_litert``'s interpreter (1 thread), in
modelconv's LiteRT worker process so that an interpreter abort cannot end modelconv.

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

from modelconv.errors import ModelLoadError
from modelconv.ir.info import TensorSpec
from modelconv.workers.litert import LiteRTError, LiteRTModel


class LiteRTRunner:
    """Runs a TFLite flatbuffer on the CPU, single-threaded for determinism.

    The interpreter lives in modelconv's LiteRT worker process
    (:mod:`modelconv.workers.litert`): a file that makes LiteRT abort raises
    :class:`~modelconv.errors.RuntimeCrashError` instead of ending this process.
    """

    name = "litert"

    def __init__(self, model: str | os.PathLike[str] | bytes, threads: int = 1):
        from modelconv.fileio import read_or_map

        # a large file is mapped here and loaded by path in the worker (LiteRT maps it):
        # neither process copies the weights
        self._content: Any = model if isinstance(model, bytes) else read_or_map(Path(model))
        self._path = None if isinstance(model, bytes) else str(model)
        self._threads = threads
        self._model = _load(self._content, self._path, threads=threads)
        self._preserved: LiteRTModel | None = None
        meta = self._model.meta
        self._inputs, self._outputs = _signature(self._content)
        if not self._inputs:  # no SignatureDef: fall back to subgraph order
            self._inputs = [d["name"] for d in meta["inputs"]]
            self._outputs = [d["name"] for d in meta["outputs"]]
        self._details = {d["name"]: d for d in meta["tensors"]}

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], options: Any = None) -> LiteRTRunner:
        """Runner for a .tflite file (``options`` is accepted for the formats contract)."""
        return cls(Path(path))

    def input_specs(self) -> list[TensorSpec]:
        """Inputs in SignatureDef order (dynamic dims from shape_signature are None)."""
        by_name = self._model.meta.get("signature_inputs", {})
        specs = []
        for name in self._inputs:
            d = by_name.get(name) or self._details[name]
            dims = tuple(None if int(s) < 0 else int(s) for s in d["shape_signature"])
            specs.append(TensorSpec(name, d["dtype"], dims))
        return specs

    def output_names(self) -> list[str]:
        """Outputs in SignatureDef order."""
        return list(self._outputs)

    def _has_sig(self) -> bool:
        return "serving_default" in self._model.meta.get("signatures", [])

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run with positional ``feeds``; outputs in SignatureDef order."""
        if not self._has_sig():
            meta = self._model.meta
            outs = self._model.run([_to_input(x, d)
                                    for d, x in zip(meta["inputs"], feeds, strict=True)])
            return [_from_output(y, d) for y, d in zip(outs, meta["outputs"], strict=True)]
        details = self._model.meta["signature_inputs"]
        kwargs = {n: _to_input(x, details[n]) for n, x in zip(self._inputs, feeds, strict=True)}
        by_name = self._model.run_signature("serving_default", kwargs)
        out_details = self._model.meta["signature_outputs"]
        return [_from_output(np.array(by_name[n]), out_details[n]) for n in self._outputs]

    def intermediates(self, feeds: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, Any]:
        """Float values of the tensors called ``names`` (quantized ones are dequantized).

        The first call loads a second interpreter that keeps every tensor (and runs without
        delegates); later calls (localisation asks in batches) reuse it.
        """
        if self._preserved is None:
            self._preserved = _load(self._content, self._path, threads=self._threads,
                                    preserve_all=True)
        by_name = {d["name"]: d for d in self._preserved.meta["tensors"]}
        fed = {int(by_name[n]["index"]): _to_input(x, by_name[n])  # int8 I/O: quantized
               for n, x in zip(self._inputs, feeds, strict=True)}
        wanted = {n: int(by_name[n]["index"]) for n in names if n in by_name}
        values = self._preserved.tensors(fed, list(dict.fromkeys(wanted.values())))
        result: dict[str, Any] = {}
        for name, index in wanted.items():
            if index not in values:  # tensor without data (e.g. optional)
                continue
            value = values[index]
            scale, zero = by_name[name]["quantization"]
            if scale and value.dtype in (np.int8, np.uint8, np.int16):
                value = (value.astype(np.float32) - zero) * scale
            result[name] = value
        return result


def _load(content: Any, path: str | None, **kwargs: Any) -> LiteRTModel:
    """``content`` loaded in the LiteRT worker; the interpreter's refusals are ModelLoadError."""
    by_path = path is not None and not isinstance(content, bytes)
    try:
        return LiteRTModel(b"" if by_path else content, path=path, by_path=by_path, **kwargs)
    except LiteRTError as exc:
        raise ModelLoadError(f"LiteRT cannot load the model: {exc}", path=path) from exc


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


def _signature(content: Any) -> tuple[list[str], list[str]]:
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
