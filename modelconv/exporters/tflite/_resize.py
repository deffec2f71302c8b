"""Which TFLite resize op (and flags) computes an ONNX Resize exactly, for static sizes.

RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR have two flags, ``align_corners`` and
``half_pixel_centers``; ONNX Resize has six coordinate transformations, four nearest
rounding modes, scales that need not equal output/input, antialiasing and more. Instead of a
table of "equivalent" modes (which holds only for some sizes), :func:`resize_plan`
evaluates, per resized axis, the source coordinate (linear) or source index (nearest) that
ONNX prescribes for every output position and the one LiteRT's kernel computes
(tflite/kernels/internal/reference/resize_bilinear.h, resize_nearest_neighbor.h) for each
flag pair, and picks a pair that agrees everywhere. Anything else is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (align_corners, half_pixel_centers); both True is invalid for the kernels.
_FLAGS = ((False, False), (False, True), (True, False))
_COORDS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
           "asymmetric", "tf_half_pixel_for_nn")


@dataclass(frozen=True)
class ResizeAxis:
    """One resized axis: input length, output length and the ONNX scale (output/input as
    given by ``scales``, or the length ratio when ``sizes`` are given)."""

    in_len: int
    out_len: int
    scale: float


def onnx_coordinate(ct: str, axis: ResizeAxis) -> np.ndarray:
    """Source coordinate of every output position under coordinate transformation ``ct``."""
    x = np.arange(axis.out_len, dtype=np.float64)
    n_in, n_out, s = axis.in_len, axis.out_len, axis.scale
    if ct == "half_pixel":
        return (x + 0.5) / s - 0.5
    if ct == "half_pixel_symmetric":
        adjustment = n_out / (s * n_in)
        offset = n_in / 2 * (1 - adjustment)
        return offset + (x + 0.5) / s - 0.5
    if ct == "pytorch_half_pixel":
        return (x + 0.5) / s - 0.5 if n_out > 1 else np.zeros_like(x)
    if ct == "align_corners":  # the spec's length_resized is input * scale, unrounded
        return x * (n_in - 1) / (n_in * s - 1) if n_out > 1 else np.zeros_like(x)
    if ct == "asymmetric":
        return x / s
    if ct == "tf_half_pixel_for_nn":
        return (x + 0.5) / s
    raise ValueError(ct)


def onnx_nearest(ct: str, nearest: str, axis: ResizeAxis) -> np.ndarray:
    """Source index of every output position (ONNX rounding, then clamped to the input)."""
    v = onnx_coordinate(ct, axis)
    half = v - np.floor(v) == 0.5
    if nearest == "round_prefer_floor":
        idx = np.where(half, np.floor(v), np.floor(v + 0.5))
    elif nearest == "round_prefer_ceil":
        idx = np.where(half, np.ceil(v), np.floor(v + 0.5))
    elif nearest == "floor":
        idx = np.floor(v)
    elif nearest == "ceil":
        idx = np.ceil(v)
    else:
        raise ValueError(nearest)
    return np.clip(idx, 0, axis.in_len - 1).astype(np.int64)


def _kernel_scale(axis: ResizeAxis, align: bool) -> np.float32:
    if align and axis.out_len > 1:
        return np.float32(axis.in_len - 1) / np.float32(axis.out_len - 1)
    return np.float32(axis.in_len) / np.float32(axis.out_len)


def kernel_nearest(axis: ResizeAxis, align: bool, half: bool) -> np.ndarray:
    """Source index RESIZE_NEAREST_NEIGHBOR reads (float32 arithmetic, as the kernel)."""
    x = np.arange(axis.out_len, dtype=np.float32)
    v = (x + np.float32(0.5 if half else 0.0)) * _kernel_scale(axis, align)
    idx = np.floor(v + np.float32(0.5)) if align else np.floor(v)  # round half away (v >= 0)
    idx = np.minimum(idx, axis.in_len - 1)
    if half:
        idx = np.maximum(idx, 0)
    return idx.astype(np.int64)


def kernel_linear(axis: ResizeAxis, align: bool, half: bool) -> np.ndarray:
    """Source coordinate RESIZE_BILINEAR interpolates at (clamped to the input)."""
    x = np.arange(axis.out_len, dtype=np.float32)
    scale = _kernel_scale(axis, align)
    v = (x + np.float32(0.5)) * scale - np.float32(0.5) if half else x * scale
    return np.clip(v.astype(np.float64), 0, axis.in_len - 1)


def resize_plan(attrs: dict[str, object], axes: list[ResizeAxis]) -> tuple[str, bool, bool] | str:
    """(TFLite op, align_corners, half_pixel_centers) computing this Resize, or why none does.

    Args:
        attrs: the Resize node's attributes (ONNX defaults apply to missing ones).
        axes: the two resized (H, W) axes.

    Returns:
        The op code and flags, or a reason string for an UnsupportedOpsError entry.
    """
    mode = str(attrs.get("mode", "nearest"))
    ct = str(attrs.get("coordinate_transformation_mode", "half_pixel"))
    nearest = str(attrs.get("nearest_mode", "round_prefer_floor"))
    what = f"mode={mode} coordinate_transformation_mode={ct}" + (
        f" nearest_mode={nearest}" if mode == "nearest" else "")
    if mode not in ("linear", "nearest") or ct not in _COORDS:
        return what
    if mode == "linear" and ct == "tf_half_pixel_for_nn":
        return what
    if int(attrs.get("exclude_outside", 0) or 0):  # type: ignore[call-overload]
        return f"{what} exclude_outside=1"
    if str(attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        return f"{what} keep_aspect_ratio_policy={attrs['keep_aspect_ratio_policy']}"
    antialias = int(attrs.get("antialias", 0) or 0)  # type: ignore[call-overload]
    if antialias and any(a.scale < 1 for a in axes):
        return f"{what} antialias=1 downsampling"
    for align, half in _FLAGS:
        if mode == "nearest":
            ok = all(np.array_equal(onnx_nearest(ct, nearest, a), kernel_nearest(a, align, half))
                     for a in axes)
        else:
            ok = all(np.allclose(np.clip(onnx_coordinate(ct, a), 0, a.in_len - 1),
                                 kernel_linear(a, align, half), rtol=0, atol=1e-5 * a.in_len)
                     for a in axes)
        if ok:
            return ("RESIZE_NEAREST_NEIGHBOR" if mode == "nearest" else "RESIZE_BILINEAR",
                    align, half)
    sizes = " x ".join(f"{a.in_len}->{a.out_len} (scale {a.scale:g})" for a in axes)
    return f"{what} for {sizes}: no align_corners/half_pixel_centers setting matches"
