"""Calibration samples and activation ranges for full-integer quantization.

Samples are read by :mod:`modelconv.calibration` (shared with the ONNX target). Ranges are
collected by running the *float* TFLite model (the exact graph that gets quantized,
including tensors created by lowerings) in LiteRT with every intermediate preserved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelconv.calibration import read_samples
from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import TflGraph


def load_samples(graph: TflGraph, source: str | Path | None,
                 source_shapes: dict[str, list[int]], seed: int = 0) -> list[list[np.ndarray]]:
    """Calibration feeds (one list per sample, graph-input order, TFLite layout)."""
    return read_samples(graph.input_names, [graph.tensors[i].shape for i in graph.inputs],
                        [graph.tensors[i].dtype for i in graph.inputs], source,
                        source_shapes, seed)


def collect_ranges(model: bytes, graph: TflGraph,
                   samples: list[list[np.ndarray]]) -> dict[int, tuple[float, float]]:
    """min/max of every float tensor over ``samples`` (tensor index -> (lo, hi)).

    The float model runs in modelconv's LiteRT worker process, so a LiteRT abort is a
    :class:`~modelconv.errors.RuntimeCrashError`, not the end of the process.
    """
    from modelconv.workers.litert import LiteRTError, LiteRTModel

    try:
        interp = LiteRTModel(model, threads=1, preserve_all=True, describe=False)
    except LiteRTError as exc:
        raise ExportError(f"LiteRT cannot load the float model for calibration: {exc}") from exc
    wanted = [i for i, t in enumerate(graph.tensors)
              if t.dtype == np.float32 and t.data is None]
    ranges: dict[int, tuple[float, float]] = {}
    for feeds in samples:
        try:
            found = interp.minmax(dict(zip(graph.inputs, feeds, strict=True)), wanted)
        except LiteRTError as exc:
            raise ExportError(f"calibration run of the float model failed: {exc}",
                              hint="Check the calibration samples") from exc
        for i, (lo, hi) in found.items():
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ExportError(f"calibration gave tensor '{graph.tensors[i].name}' the "
                                  f"non-finite range [{lo}, {hi}]",
                                  hint="Check the calibration samples")
            old = ranges.get(i)
            ranges[i] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return ranges
