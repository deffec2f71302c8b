"""Calibration data for full-integer quantization, shared by the ONNX and TFLite targets.

Samples come from ``options.calibration``: an ``.npz`` file (keys = input names, or
``arr_0``...; a leading sample axis is allowed) or a folder of ``.npy`` (single-input
models) / ``.npz`` files, one sample each. Calibration data is required: ranges taken
from random samples look fine on random samples and not on real inputs, so random
samples are used only when asked for explicitly (``calibration="random"``), and
:func:`check_calibration` gives the warning the caller shows. numpy only: no target's
dependencies are imported here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelconv.errors import ExportError

MAX_SAMPLES = 64
RANDOM_SAMPLES = 8
#: ``calibration`` value that asks for seeded random samples
RANDOM = "random"


def check_calibration(quantize: str | None, calibration: str | Path | None) -> str | None:
    """Refuse full-int8 quantization without calibration data.

    Args:
        quantize: the requested quantization (only ``"int8"`` needs calibration).
        calibration: a folder / .npz of samples, ``"random"`` or ``None``.

    Returns:
        The warning to show (in command-line terms) for ``"random"``, else ``None``.

    Raises:
        ExportError: ``quantize="int8"`` without ``calibration``.
    """
    if quantize != "int8":
        return None
    if calibration is None:
        raise ExportError(
            "--quantize int8 needs calibration data: activation ranges taken from random "
            "samples fit random samples, not your model's real inputs",
            hint="Pass --calibration DIR|FILE.npz with a few dozen real input samples "
                 "(calibration=... in Python), or --calibration random to accept random "
                 "ranges knowingly")
    if str(calibration) == RANDOM:
        return ("int8 ranges were calibrated on random normal samples (--calibration random): "
                "accuracy on real inputs is unknown and may be poor; pass --calibration "
                "DIR|FILE.npz with real samples for a trustworthy int8 model")
    return None


def read_samples(names: list[str], shapes: list[list[int]], dtypes: list[np.dtype],
                 source: str | Path | None, source_shapes: dict[str, list[int]] | None = None,
                 seed: int = 0) -> list[list[np.ndarray]]:
    """Calibration feeds for inputs ``names`` of ``shapes``/``dtypes`` (one list per sample).

    Args:
        names: Input names, in order.
        shapes: Their static shapes in the target's layout.
        dtypes: Their dtypes.
        source: An .npz file or a folder of .npy/.npz samples, or ``"random"`` for seeded
            random samples (see :func:`check_calibration`).
        source_shapes: Shapes in the source layout (NCHW) where they differ (NHWC inputs).
        seed: Seed of the generated samples.

    Returns:
        Up to MAX_SAMPLES samples, each a list of arrays in input order.

    Raises:
        ExportError: the data is missing, or does not fit the inputs.
    """
    source_shapes = source_shapes or {}
    check_calibration("int8", source)
    assert source is not None  # refused above
    if str(source) == RANDOM:
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
