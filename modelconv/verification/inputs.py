"""Sample inputs for verification: seeded generation from a signature, or user files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import ModelLoadError, ShapeError
from modelconv.ir.info import TensorSpec

#: refuse generated inputs larger than this many elements per tensor (shape bombs)
MAX_INPUT_ELEMENTS = 64 * 1024 * 1024


def resolve_shape(
    spec: TensorSpec, dim_values: Mapping[str, int] | None = None, batch_size: int = 1
) -> tuple[int, ...]:
    """Concrete shape for ``spec``: symbolic dims from ``dim_values``, else defaults.

    The first dynamic dim defaults to ``batch_size``; other dynamic dims to 8.
    """
    dims = []
    for axis, d in enumerate(spec.shape):
        if isinstance(d, int) and d >= 0:
            dims.append(d)
        elif isinstance(d, str) and dim_values and d in dim_values:
            dims.append(int(dim_values[d]))
        else:
            dims.append(batch_size if axis == 0 else 8)
    count = int(np.prod(dims, dtype=object)) if dims else 1  # exact: int64 wraps
    if count > MAX_INPUT_ELEMENTS:
        raise ShapeError(
            f"input '{spec.name}' would need {count} elements (shape {dims})",
            hint="Give smaller values for dynamic dims (--dim NAME=VALUE), pass --inputs, "
                 "or skip verification (--no-verify)",
        )
    return tuple(dims)


def generate_inputs(
    specs: Sequence[TensorSpec],
    *,
    seed: int = 0,
    dim_values: Mapping[str, int] | None = None,
    batch_size: int = 1,
    int_ranges: Mapping[str, tuple[int, int]] | None = None,
) -> list[np.ndarray]:
    """Seeded random inputs: floats ~ N(0, 1), ints in their known range, bools 50/50."""
    rng = np.random.default_rng(seed)
    feeds = []
    for spec in specs:
        shape = resolve_shape(spec, dim_values, batch_size)
        dtype = np.dtype(spec.dtype if spec.dtype not in ("unknown", "str") else np.float32)
        if dtype.kind == "f":
            feeds.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind in "iu":
            lo, hi = (int_ranges or {}).get(spec.name, (0, 10))
            feeds.append(rng.integers(lo, max(hi, lo + 1), size=shape).astype(dtype))
        elif dtype.kind == "b":
            feeds.append(rng.random(shape) < 0.5)
        else:
            raise ShapeError(f"cannot generate inputs of dtype {dtype} for '{spec.name}'",
                             hint="Pass inputs with --inputs FILE.npz")
    return feeds


def load_inputs(
    source: str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any],
    specs: Sequence[TensorSpec],
) -> list[list[np.ndarray]]:
    """User inputs as a list of samples, each a positional list matching ``specs``.

    Accepts an .npz (keys = input names, or arr_0..), an .npy (single input), a folder of
    .npz/.npy files (one sample each), a mapping name->array or a sequence of arrays.
    """
    if isinstance(source, Mapping):
        return [_order(dict(source), specs, "inputs")]
    if isinstance(source, (list, tuple)):
        return [[np.asarray(a) for a in source]]
    path = Path(source)  # type: ignore[arg-type]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".npz", ".npy"))
        if not files:
            raise ModelLoadError("no .npz or .npy samples in the folder", path=str(path))
        return [_load_file(p, specs) for p in files]
    return [_load_file(path, specs)]


def _load_file(path: Path, specs: Sequence[TensorSpec]) -> list[np.ndarray]:
    try:
        if path.suffix == ".npy":
            return [np.load(path, allow_pickle=False)]
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot read inputs: {exc}", path=str(path),
            hint="Inputs must be .npz or .npy files without pickled objects",
        ) from exc
    return _order(arrays, specs, str(path))


def _order(arrays: dict[str, Any], specs: Sequence[TensorSpec], where: str) -> list[np.ndarray]:
    names = [s.name for s in specs]
    if all(n in arrays for n in names):
        return [np.asarray(arrays[n]) for n in names]
    if len(arrays) == len(specs):
        return [np.asarray(arrays[k]) for k in arrays]  # file order
    raise ShapeError(
        f"{where}: has arrays {sorted(arrays)} but the model's inputs are {names}",
        hint="Name the arrays after the model's inputs",
    )


def cast_like(feeds: Sequence[np.ndarray], specs: Sequence[TensorSpec]) -> list[np.ndarray]:
    """Cast each feed to the dtype ``specs`` declares (a runner may differ from the source)."""
    out = []
    for feed, spec in zip(feeds, specs, strict=False):
        try:
            dtype = np.dtype(spec.dtype)
        except TypeError:
            out.append(feed)
            continue
        out.append(feed.astype(dtype, copy=False))
    return out
