"""Calibration samples and activation ranges for full-integer quantization.

Samples come from ``options.calibration``: an ``.npz`` file (keys = input names, or
``arr_0``...; a leading sample axis is allowed) or a folder of ``.npy`` (single-input
models) / ``.npz`` files, one sample each. Without calibration data, seeded standard
normal samples are generated and a warning says so. Ranges are collected by running the
*float* TFLite model (the exact graph that gets quantized, including tensors created by
lowerings) in LiteRT with every intermediate preserved.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import TflGraph

MAX_SAMPLES = 64
RANDOM_SAMPLES = 8


def load_samples(graph: TflGraph, source: str | Path | None,
                 source_shapes: dict[str, list[int]], seed: int = 0) -> list[list[np.ndarray]]:
    """Calibration feeds (one list per sample, graph-input order, TFLite layout)."""
    return read_samples(graph.input_names, [graph.tensors[i].shape for i in graph.inputs],
                        [graph.tensors[i].dtype for i in graph.inputs], source,
                        source_shapes, seed)


def read_samples(names: list[str], shapes: list[list[int]], dtypes: list[np.dtype],
                 source: str | Path | None, source_shapes: dict[str, list[int]] | None = None,
                 seed: int = 0) -> list[list[np.ndarray]]:
    """Calibration feeds for inputs ``names`` of ``shapes``/``dtypes`` (one list per sample).

    Args:
        names: Input names, in order.
        shapes: Their static shapes in the target's layout.
        dtypes: Their dtypes.
        source: An .npz file or a folder of .npy/.npz samples; None generates seeded
            random samples (with a warning).
        source_shapes: Shapes in the source layout (NCHW) where they differ (NHWC inputs).
        seed: Seed of the generated samples.

    Returns:
        Up to MAX_SAMPLES samples, each a list of arrays in input order.

    Raises:
        ExportError: the data is missing, or does not fit the inputs.
    """
    source_shapes = source_shapes or {}
    if source is None:
        warnings.warn("int8 quantization without calibration data: using seeded random normal "
                      "samples; pass calibration=<folder or .npz> for accurate ranges",
                      UserWarning, stacklevel=3)
        rng = np.random.default_rng(seed)
        return [[_random(rng, s, d) for s, d in zip(shapes, dtypes, strict=True)]
                for _ in range(RANDOM_SAMPLES)]
    path = Path(source)
    if not path.exists():
        raise ExportError("calibration data not found", path=str(path))
    per_input: dict[str, list[np.ndarray]] = {n: [] for n in names}
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for f in files:
        if f.suffix == ".npy":
            if len(names) != 1:
                raise ExportError(".npy calibration files need a single-input model",
                                  path=str(f), hint="Use .npz files keyed by input name")
            per_input[names[0]].append(np.load(f, allow_pickle=False))
        elif f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as npz:
                keys = list(npz.keys())
                for k, name in enumerate(names):
                    key = name if name in npz else (keys[k] if k < len(keys) else None)
                    if key is None:
                        raise ExportError(f"calibration file has no array for input '{name}'",
                                          path=str(f))
                    per_input[name].append(npz[key])
    samples: list[list[np.ndarray]] = []
    for k, name in enumerate(names):
        logical = source_shapes.get(name, shapes[k])
        split = [s for arr in per_input[name] for s in _split(arr, logical)]
        for i, arr in enumerate(split[:MAX_SAMPLES]):
            if len(samples) <= i:
                samples.append([])
            samples[i].append(_to_layout(arr, logical, shapes[k]).astype(dtypes[k]))
    samples = [s for s in samples if len(s) == len(names)]
    if not samples:
        raise ExportError("no usable calibration samples", path=str(path))
    return samples


def _random(rng: np.random.Generator, shape: list[int], dtype: np.dtype) -> np.ndarray:
    if np.dtype(dtype).kind in "iu":  # ids 1..2: valid for any vocabulary, never a 0 divisor
        return rng.integers(1, 3, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _split(arr: np.ndarray, shape: list[int]) -> list[np.ndarray]:
    """One array -> samples of ``shape`` (a stack or a larger batch is split)."""
    if list(arr.shape) == list(shape):
        return [arr]
    if arr.ndim == len(shape) + 1 and list(arr.shape[1:]) == list(shape):
        return list(arr)
    if arr.ndim == len(shape) and shape and shape[0] == 1 and list(arr.shape[1:]) == shape[1:]:
        return [a[None] for a in arr]
    raise ExportError(f"calibration array of shape {list(arr.shape)} does not fit input "
                      f"shape {shape}")


def _to_layout(arr: np.ndarray, logical: list[int], physical: list[int]) -> np.ndarray:
    if list(arr.shape) == list(physical):
        return arr
    if arr.ndim == 4 and [logical[0], logical[2], logical[3], logical[1]] == list(physical):
        return arr.transpose(0, 2, 3, 1)
    raise ExportError(f"calibration sample shape {list(arr.shape)} != input shape {physical}")


def collect_ranges(model: bytes, graph: TflGraph,
                   samples: list[list[np.ndarray]]) -> dict[int, tuple[float, float]]:
    """min/max of every float tensor over ``samples`` (tensor index -> (lo, hi))."""
    from ai_edge_litert import interpreter as lite

    interp = lite.Interpreter(
        model_content=model, num_threads=1, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    wanted = [i for i, t in enumerate(graph.tensors)
              if t.dtype == np.float32 and t.data is None]
    ranges: dict[int, tuple[float, float]] = {}
    for feeds in samples:
        for idx, x in zip(graph.inputs, feeds, strict=True):
            interp.set_tensor(idx, x)
        try:
            interp.invoke()
        except RuntimeError as exc:
            raise ExportError(f"calibration run of the float model failed: {exc}",
                              hint="Check the calibration samples") from exc
        for i in wanted:
            try:
                v = interp.get_tensor(i)
            except ValueError:
                continue
            if v.size == 0:
                continue
            lo, hi = float(np.min(v)), float(np.max(v))
            old = ranges.get(i)
            ranges[i] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return ranges
