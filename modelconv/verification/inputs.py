"""Sample inputs for verification: seeded generation from a signature, or user files."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import ModelLoadError, ShapeError
from modelconv.ir.info import PADDED, TensorSpec

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


#: what a name says about an input; matched on the lower-cased name (see input_kind)
_MASK = re.compile(r"masks?$")
_TYPE_IDS = re.compile(r"(type_ids?|segment_ids?|token_types?|segments?)$")
_POSITION_IDS = re.compile(r"position_ids?$")
_DEFAULT_INT_RANGE = (0, 10)
_DEFAULT_TYPE_RANGE = (0, 2)


def input_kind(name: str, dtype: str, int_range: tuple[int, int] | None = None) -> str:
    """How inputs for a model input are generated: the rule, decided by name and dtype.

    The rules (documented in docs/verification.md, "How inputs are generated"):

    - ``mask``: the name ends with ``mask``/``masks`` (``attention_mask``,
      ``padding_mask``, ``src_key_padding_mask``, ``*_mask``), any dtype: 0/1 values,
      mostly 1s with a tail of 0s along the last axis of every row (at least one 1 and,
      when the row has two positions or more, at least one 0, so neither convention,
      1 = keep or 1 = pad, masks a whole row).
    - ``type_ids``: the name ends with ``type_ids``, ``segment_ids``, ``token_type(s)``
      or ``segment(s)``: integers inside the embedding's range when the importer knows
      it, else 0/1.
    - ``position_ids``: the name ends with ``position_ids``: 0, 1, 2... along the last
      axis (clipped to the embedding's range when known).
    - ``ids``: any other input that indexes an embedding (the importer gives its
      ``[lo, hi)`` range, also for float inputs cast to an index): uniform integers in
      the range, so token ids stay inside the vocabulary.
    - padded inputs: when the model masks the time steps of an input equal to a value
      (``Embedding(mask_zero=True)``: token id 0; ``Masking(mask_value)``: steps whose
      features all equal it), every row of the generated values ends with 1 to a quarter
      of its steps set to that value (token ids are drawn from the rest of the range).
    - ``int``: other integer inputs: uniform in [0, 10).
    - ``bool``: other boolean inputs: 50/50.
    - ``float``: other float inputs: standard normal N(0, 1).

    Args:
        name: the input's name.
        dtype: its numpy dtype name.
        int_range: the ``[lo, hi)`` range of values the model indexes with it, if known.

    Returns:
        One of ``mask``, ``type_ids``, ``position_ids``, ``ids``, ``int``, ``bool``,
        ``float``.
    """
    lowered = name.lower()
    kind = np.dtype(dtype).kind if dtype not in ("unknown", "str") else "f"
    if _MASK.search(lowered):
        return "mask"
    if kind in "iuf" and _TYPE_IDS.search(lowered):
        return "type_ids"
    if kind in "iuf" and _POSITION_IDS.search(lowered):
        return "position_ids"
    if int_range is not None and kind in "iuf":
        return "ids"
    return {"i": "int", "u": "int", "b": "bool"}.get(kind, "float")


def generate_input(spec: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator,
                   int_range: tuple[int, int] | None = None,
                   padding: int | None = None) -> np.ndarray:
    """One generated input for ``spec`` of ``shape``, following :func:`input_kind`.

    Args:
        spec: the input's name and dtype.
        shape: its concrete shape.
        rng: the seeded generator (one per sample).
        int_range: the ``[lo, hi)`` range of an index input, if known.
        padding: the value the model masks time steps with (see :func:`input_kind`).

    Returns:
        The array, of ``spec``'s dtype.

    Raises:
        ShapeError: the dtype cannot be generated (strings): pass ``--inputs``.
    """
    dtype = np.dtype(spec.dtype if spec.dtype not in ("unknown", "str") else np.float32)
    if dtype.kind not in "iufb":
        raise ShapeError(f"cannot generate inputs of dtype {dtype} for '{spec.name}'",
                         hint="Pass inputs with --inputs FILE.npz")
    kind = input_kind(spec.name, dtype.name, int_range)
    if padding is not None and len(shape) >= 2 and kind in ("ids", "int", "float"):
        return _padded(spec, shape, rng, int_range, padding, dtype)
    if kind == "mask":
        return _mask(shape, rng).astype(dtype)
    if kind == "position_ids":
        hi = int_range[1] if int_range else None
        pos = np.arange(shape[-1] if shape else 1)
        pos = np.minimum(pos, hi - 1) if hi else pos
        return np.broadcast_to(pos, shape).astype(dtype)
    if kind in ("type_ids", "ids", "int"):
        lo, hi = int_range or (_DEFAULT_TYPE_RANGE if kind == "type_ids" else _DEFAULT_INT_RANGE)
        return rng.integers(lo, max(hi, lo + 1), size=shape).astype(dtype)
    if kind == "bool":
        return rng.random(shape) < 0.5
    return rng.standard_normal(shape).astype(dtype)


def _padded(spec: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator,
            int_range: tuple[int, int] | None, padding: int, dtype: np.dtype) -> np.ndarray:
    """Values whose rows end with padded time steps (axis 1) equal to ``padding``."""
    x: np.ndarray
    if int_range is not None:
        lo, hi = int_range
        lo = lo + 1 if lo == padding else lo
        x = rng.integers(lo, max(hi, lo + 1), size=shape)
    else:
        x = rng.standard_normal(shape)
    keep = _mask((shape[0], shape[1]), rng).astype(bool)
    keep = keep.reshape(keep.shape + (1,) * (len(shape) - 2))
    return np.where(keep, x, padding).astype(dtype)


def _mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """0/1 mask: per row (last axis) a run of 1s, then a tail of 0s (1 to a quarter)."""
    if not shape:
        return np.ones((), np.int64)
    length = shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    mask = np.ones((rows, length), np.int64)
    if length >= 2:
        tails = rng.integers(1, max(1, length // 4) + 1, size=rows)
        for row, tail in enumerate(tails):
            mask[row, length - int(tail):] = 0
    return mask.reshape(shape)


def generate_inputs(
    specs: Sequence[TensorSpec],
    *,
    seed: int = 0,
    dim_values: Mapping[str, int] | None = None,
    batch_size: int = 1,
    int_ranges: Mapping[str, tuple[int, int]] | None = None,
) -> list[np.ndarray]:
    """One seeded sample for ``specs`` (the rules: :func:`input_kind`).

    Args:
        specs: the model's inputs in order.
        seed: the sample's seed.
        dim_values: values of symbolic dimensions by name.
        batch_size: the value of a dynamic first dimension.
        int_ranges: ``[lo, hi)`` of inputs that index an embedding, by input name.

    Returns:
        One array per spec.

    Raises:
        ShapeError: a shape is too large, or a dtype cannot be generated.
    """
    rng = np.random.default_rng(seed)
    ranges = int_ranges or {}
    return [generate_input(spec, resolve_shape(spec, dim_values, batch_size), rng,
                           ranges.get(spec.name), (ranges.get(spec.name + PADDED) or (None,))[0])
            for spec in specs]


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


def split_samples(samples: Sequence[Sequence[np.ndarray]], specs: Sequence[TensorSpec],
                  limit: int) -> list[list[np.ndarray]]:
    """Samples stored as stacks (calibration data) split into model-sized samples.

    An array with one axis more than its input, or a batch of rows for an input whose
    batch is fixed to 1, holds several samples; at most ``limit`` are kept.

    Args:
        samples: samples as read by :func:`load_inputs`.
        specs: the model's inputs.
        limit: the most samples to return.

    Returns:
        The samples, each a positional list matching ``specs``.
    """
    out: list[list[np.ndarray]] = []
    for sample in samples:
        columns = [_split_one(np.asarray(a), s) for a, s in zip(sample, specs, strict=False)]
        count = min((len(c) for c in columns), default=0)
        out.extend([c[k] for c in columns] for k in range(count))
    return out[:limit]


def _split_one(arr: np.ndarray, spec: TensorSpec) -> list[np.ndarray]:
    rank = len(spec.shape)
    if rank and arr.ndim == rank + 1:
        return list(arr)
    if rank and arr.ndim == rank and spec.shape[0] == 1 and arr.shape[0] > 1:
        return [a[None] for a in arr]
    return [arr]


def load_reference(
    source: str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any],
    output_names: Sequence[str],
    count: int,
) -> list[list[np.ndarray]]:
    """Expected outputs recorded elsewhere (``--reference``), one list per input sample.

    Args:
        source: an .npz (keys = output names, or ``output_0``... / ``arr_0``... in order),
            a folder of such files (one per input sample, in sorted order), a mapping
            name -> array, or a sequence of arrays.
        output_names: the converted model's outputs, in order.
        count: the number of input samples the reference must cover.

    Returns:
        Per sample, the expected outputs in ``output_names`` order.

    Raises:
        ModelLoadError: the file cannot be read.
        ShapeError: the reference's outputs or samples do not match the model's.
    """
    if isinstance(source, Mapping):
        samples = [_order_outputs(dict(source), output_names, "reference")]
    elif isinstance(source, (list, tuple)):
        samples = [[np.asarray(a) for a in source]]
    else:
        path = Path(source)  # type: ignore[arg-type]
        files = sorted(p for p in path.iterdir() if p.suffix == ".npz") if path.is_dir() \
            else [path]
        if not files:
            raise ModelLoadError("no .npz reference outputs in the folder", path=str(path))
        samples = [_order_outputs(_read_npz(f, "reference outputs"), output_names, str(f))
                   for f in files]
    if len(samples) != count:
        raise ShapeError(
            f"the reference has {len(samples)} sample(s) but the inputs have {count}",
            hint="Give one reference .npz per input sample (a folder for a folder)")
    for sample in samples:
        if len(sample) != len(output_names):
            raise ShapeError(
                f"the reference has {len(sample)} output(s) but the model has "
                f"{len(output_names)} ({', '.join(output_names)})",
                hint="Name the arrays after the outputs, or output_0, output_1...")
    return samples


def _read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                return {"output_0": np.asarray(data)}
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {what}: {exc}", path=str(path),
                             hint="Use an .npz file without pickled objects") from exc


def _order_outputs(arrays: dict[str, Any], names: Sequence[str], where: str) -> list[np.ndarray]:
    if all(n in arrays for n in names):
        return [np.asarray(arrays[n]) for n in names]
    for prefix in ("output_", "arr_"):
        keys = [f"{prefix}{i}" for i in range(len(arrays))]
        if all(k in arrays for k in keys):
            return [np.asarray(arrays[k]) for k in keys]
    raise ShapeError(
        f"{where}: has arrays {sorted(arrays)} but the model's outputs are {list(names)}",
        hint="Name the arrays after the outputs, or output_0, output_1... in order")
