"""Weights that stay in their file: mmap-backed tensors and a module built without weights.

A weights file (``.safetensors``, a zip state_dict ``.pt``) and an architecture factory
become an ``nn.Module`` whose parameters are views of the file's pages:

    factory() under meta_parameters()    parameters on the meta device (no memory, no init),
                                         buffers computed by __init__ real (they are small)
    mapped_safetensors(path)             {name: tensor} viewing an mmap of the file
    mapped_state_dict(path)              torch.load(mmap=True, weights_only=True)
    assign_weights(module, state)        load_state_dict(assign=True): the module's
                                         parameters *are* the mapped tensors; tied
                                         parameters tied again

So the module, torch.export's program and the IR initializers (numpy views, see
``lower._ir_tensor``) all read the same file-backed pages: resident memory grows with the
page cache (reclaimable, ``RssFile``), not with anonymous allocations. The mmap is private
copy-on-write (``ACCESS_COPY``): nothing can write to the file, and torch gets a writable
buffer. Whatever cannot be mapped (a parameter the factory derives from another one, a
dtype that differs from the model's) is reported by :func:`assign_weights` so the caller
can fall back to the in-memory route.
"""

from __future__ import annotations

import contextlib
import mmap
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from modelconv.errors import ModelLoadError

_ST_TORCH = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool, "U16": torch.uint16, "U32": torch.uint32,
    "U64": torch.uint64, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def mapped_safetensors(path: Path, header: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as views of a private mmap of it (no copy).

    Args:
        path: the file.
        header: its header, already validated (``sources.check_safetensors_header``).

    Returns:
        ``{name: tensor}`` in the header's order; a tensor whose offset is not a multiple
        of its item size (not written by the safetensors library) is copied instead.

    Raises:
        ModelLoadError: a dtype torch has no type for.
    """
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        size = path.stat().st_size
        if size == 8 + n:  # nothing to map (no tensor data)
            return OrderedDict()
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    out: dict[str, torch.Tensor] = OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _ST_TORCH.get(info["dtype"])
        if dtype is None:
            raise ModelLoadError(f"safetensors entry '{name}' has dtype {info['dtype']}, "
                                 "which torch has no type for", path=str(path))
        begin, end = (int(x) for x in info["data_offsets"])
        shape = [int(d) for d in info["shape"]]
        itemsize = torch.empty((), dtype=dtype).element_size()
        start = 8 + n + begin
        count = (end - begin) // itemsize
        if count == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        elif start % itemsize:  # misaligned for the dtype: copy (rare, hand-made files)
            raw = torch.frombuffer(mm, dtype=torch.uint8, count=end - begin, offset=start)
            out[name] = raw.clone().view(dtype).reshape(shape)
        else:
            with warnings_suppressed():
                flat = torch.frombuffer(mm, dtype=dtype, count=count, offset=start)
            out[name] = flat.reshape(shape)
    return out


@contextlib.contextmanager
def warnings_suppressed() -> Iterator[None]:
    """Silence torch's warnings about buffers while mapping (the map is private)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def mapped_state_dict(path: Path) -> dict[str, torch.Tensor] | None:
    """``torch.load(mmap=True, weights_only=True)`` of a zip state_dict; None for a legacy
    (non-zip) file, which torch cannot map.

    Args:
        path: the checkpoint.

    Returns:
        The flat state (tensors backed by the file's pages), or None.

    Raises:
        ModelLoadError / UnsafeModelError: as ``sources.load_torch_weights``.
    """
    if not zipfile.is_zipfile(path):
        return None
    from .sources import flatten_state, load_torch_weights

    try:
        obj = torch.load(str(path), weights_only=True, map_location="cpu", mmap=True)
    except Exception:  # the unmapped loader gives the typed error (unsafe, corrupt...)
        return load_torch_weights(path)
    return flatten_state(obj, path)


@contextlib.contextmanager
def meta_parameters() -> Iterator[None]:
    """While active, every ``nn.Parameter`` a module registers lives on the meta device.

    Buffers stay real: ``__init__`` computes them (position tables, masks, rotary
    frequencies) and files often leave them out (``persistent=False``). A parameter is
    created in real memory by its layer (``torch.empty``: pages never touched, so never
    resident) and replaced by its meta twin when registered; initialisers then run on meta
    and cost nothing.
    """
    original = torch.nn.Module.register_parameter

    def register(self: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            kind = type(param)
            param = kind(param.to("meta"), requires_grad=param.requires_grad)
        original(self, name, param)

    torch.nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original  # type: ignore[method-assign]


def assign_weights(module: torch.nn.Module, state: Mapping[str, torch.Tensor],
                   groups: list[list[str]]) -> list[str]:
    """Make ``state``'s tensors the module's parameters and buffers (no copy).

    Args:
        module: built under :func:`meta_parameters`; ``state`` already checked against it.
        state: the mapped tensors (a ``_metadata`` attribute is honoured).
        groups: :func:`~modelconv.importers.torch.sources.tie_groups` taken before loading.

    Returns:
        Names of tensors still on the meta device (the caller falls back); empty on success.
    """
    expected = module.state_dict(keep_vars=True)
    fitted: dict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        want = expected.get(key)
        if want is not None and value.dtype != want.dtype:
            value = value.to(want.dtype)  # as load_state_dict's copy_ would (materialised)
        fitted[key] = value
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        fitted._metadata = metadata  # type: ignore[attr-defined]
    module.load_state_dict(fitted, strict=False, assign=True)
    for names in groups:  # one file tensor for the group; every alias points at it
        source = next((n for n in names if n in state), None)
        if source is None:
            continue
        param = module.get_parameter(source)
        for other in names:
            owner, _, attr = other.rpartition(".")
            setattr(module.get_submodule(owner) if owner else module, attr, param)
    return [n for n, t in (*module.named_parameters(remove_duplicate=False),
                           *module.named_buffers(remove_duplicate=False)) if t.is_meta]


def mapped_module(spec: Any, path: Path, state: Mapping[str, torch.Tensor]
                  ) -> tuple[torch.nn.Module | None, str | None]:
    """The architecture ``spec`` built with meta parameters and ``state`` assigned to it.

    Args:
        spec: the architecture factory (``"pkg.module:factory"`` or a callable).
        path: the weights file, for errors.
        state: its mapped tensors.

    Returns:
        ``(module, None)``, or ``(None, why)`` when the module cannot be built that way (the
        caller then builds it in memory and says so).

    Raises:
        ModelLoadError: the weights do not fit the architecture.
    """
    from .sources import build_architecture, fit_state_dict, tie_groups

    try:
        with meta_parameters():
            module = build_architecture(spec, path)
    except ModelLoadError:
        raise
    except Exception as exc:  # the factory's own code failed on meta: build it for real
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return None, f"building the architecture with meta parameters failed ({first})"
    groups = tie_groups(module)
    left = assign_weights(module, fit_state_dict(module, dict(state), path), groups)
    if left:
        shown = ", ".join(left[:5]) + (f" (+{len(left) - 5} more)" if len(left) > 5 else "")
        return None, (f"{len(left)} tensor(s) the architecture derives from its parameters "
                      f"are not in the file ({shown})")
    return module, None
