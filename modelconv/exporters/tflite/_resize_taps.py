"""ONNX Resize as per-axis taps: every output position reads ``n`` input positions with
constant weights (static sizes and scales).

Resize is separable: along each resized axis, output ``i`` is ``sum_k coeff[i, k] *
x[index[i, k]]``, where the source coordinate of ``i`` comes from the coordinate
transformation, the taps from the mode's kernel (nearest: the rounded neighbour, linear: 2,
cubic: 4, antialias: a footprint widened by 1 / scale), edge positions are clamped (ONNX
pads with the edge value), ``exclude_outside`` drops taps outside and renormalises, and
``tf_crop_and_resize`` writes ``extrapolation_value`` where the coordinate leaves the input.
This module computes those tables with numpy, from the operator's definition in the ONNX
spec; the lowering turns them into GATHER / MUL / ADD ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AxisResize:
    """One resized axis: lengths, the ONNX scale, and the roi (start, end) of the axis."""

    in_len: int
    out_len: int
    scale: float
    roi: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Taps:
    """Source positions ``index`` [out, n] (clamped), weights ``coeff`` [out, n] and the
    positions written with the extrapolation value (``outside`` [out], or None)."""

    index: np.ndarray
    coeff: np.ndarray
    outside: np.ndarray | None


def source_coordinates(ct: str, ax: AxisResize) -> tuple[np.ndarray, np.ndarray | None]:
    """The source coordinate of every output position (and, for tf_crop_and_resize, which
    positions are extrapolated)."""
    y = np.arange(ax.out_len, dtype=np.float64)
    n_in, s = ax.in_len, ax.scale
    width = s * n_in  # the spec's unrounded output length
    if ct == "align_corners":
        return (np.zeros_like(y) if width == 1 else y * (n_in - 1) / (width - 1)), None
    if ct == "asymmetric":
        return y / s, None
    if ct == "tf_crop_and_resize":
        lo, hi = ax.roi
        x = (np.full_like(y, (hi - lo) * (n_in - 1) / 2) if width == 1
             else y * (hi - lo) * (n_in - 1) / (width - 1)) + lo * (n_in - 1)
        return x, (x < 0) | (x > n_in - 1)
    if ct == "pytorch_half_pixel":
        return (np.full_like(y, -0.5) if width == 1 else (y + 0.5) / s - 0.5), None
    if ct in ("half_pixel", "tf_half_pixel_for_nn"):
        x = (y + 0.5) / s - 0.5
        return (x + 0.5 if ct == "tf_half_pixel_for_nn" else x), None
    if ct == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - ax.out_len / width)
        return offset + (y + 0.5) / s - 0.5, None
    raise ValueError(f"coordinate_transformation_mode={ct}")


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """The cubic convolution kernel with coefficient ``a`` at distances ``x``."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def kernel_coeffs(mode: str, ratio: np.ndarray, scale: float, *, cubic_a: float = -0.75,
                  antialias: bool = False, nearest_mode: str = "round_prefer_floor",
                  ) -> np.ndarray:
    """Weights [out, n] of the taps left of and right of each source coordinate, given its
    distance ``ratio`` in (0, 1] past the left neighbour (1 for an integer coordinate)."""
    r = ratio[:, None]
    if mode == "nearest":
        exact = ratio == 1
        right = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5,
                 "floor": np.zeros_like(exact), "ceil": np.ones_like(exact)}[nearest_mode]
        right = exact | right
        return np.stack([~right, right], axis=1).astype(np.float64)
    s = min(scale, 1.0) if antialias else 1.0
    if mode == "linear":
        start = math.floor(-1 / s) + 1
        offsets = np.arange(start, 2 - start)
        c = np.clip(1 - np.abs((offsets[None, :] - r) * s), 0, 1)
    elif mode == "cubic":
        start = math.floor(-2 / s) + 1
        offsets = np.arange(start, 2 - start)
        c = _cubic((offsets[None, :] - r) * s, cubic_a)
    else:
        raise ValueError(f"mode={mode}")
    return c / c.sum(axis=1, keepdims=True) if antialias else c


def resize_taps(ax: AxisResize, mode: str, ct: str, *, cubic_a: float = -0.75,
                exclude_outside: bool = False, antialias: bool = False,
                nearest_mode: str = "round_prefer_floor") -> Taps:
    """The taps of one resized axis (see the module docstring)."""
    x, outside = source_coordinates(ct, ax)
    left = np.floor(x)
    ratio = np.where(x == left, 1.0, x - left)
    coeff = kernel_coeffs(mode, ratio, ax.scale, cubic_a=cubic_a, antialias=antialias,
                          nearest_mode=nearest_mode)
    n = coeff.shape[1]
    # the n positions nearest x, ties to the smaller: for even n the window starts n/2 - 1
    # left of floor(x) (n/2 at an integer x), for odd n it is centred on the nearest integer
    frac = x - left
    if n % 2 == 0:
        start = left + np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        start = left + np.where(frac <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    index = start.astype(np.int64)[:, None] + np.arange(n)[None, :]
    if exclude_outside:
        coeff = np.where((index < 0) | (index >= ax.in_len), 0.0, coeff)
        total = coeff.sum(axis=1, keepdims=True)
        coeff = coeff / np.where(total == 0, 1.0, total)
    return Taps(np.clip(index, 0, ax.in_len - 1), coeff, outside)
