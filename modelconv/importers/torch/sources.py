"""Reading torch files safely: state_dict pickles, safetensors, the architecture, .pt2 checks.

Models are untrusted input: ``torch.load`` always runs with ``weights_only=True`` and is
never retried without it; safetensors headers are checked before any tensor is read.
.pt2 archives are audited in :mod:`.pt2_audit`.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from modelconv.errors import ModelLoadError, UnsafeModelError
from modelconv.formats import pickle_globals, text_pickle_globals

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
_MAX_HEADER = 100 * 1024 * 1024
_ST_DTYPES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
}


def load_torch_weights(path: Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a torch.save'd state_dict, loaded with weights_only=True."""
    _refuse_text_pickle(path)
    try:
        obj = torch.load(str(path), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        names = checkpoint_globals(path)
        modules = [n for n in names if n.startswith("torch.nn.modules.")]
        what = (f"a whole pickled nn.Module ({modules[0].rsplit('.', 1)[-1]})" if modules
                else "pickled Python objects")
        shown = ", ".join(n for n in names if n not in modules or n == modules[0])
        raise UnsafeModelError(
            f"the file holds {what}, not only tensors" + (f" (it references {shown})"
                                                          if shown else "")
            + "; unpickling it runs code from the file, so it was refused", path=str(path),
            hint="Pass --trust-code (trust_code=True) to load it with torch.load("
                 "weights_only=False), only if you trust the file; or save the weights: "
                 "torch.save(model.state_dict(), path)",
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"cannot read the torch checkpoint: {_first(exc)}",
                             path=str(path)) from exc
    return flatten_state(obj, path)


#: globals a plain state_dict pickle references (torch's tensor rebuild functions)
_WEIGHT_GLOBALS = ("torch._utils.", "torch.storage.", "collections.OrderedDict",
                   "torch.serialization._get_layout", "torch.device")


def checkpoint_globals(path: Path, limit: int = 8) -> list[str]:
    """Up to ``limit`` globals beyond tensor rebuilding that a torch file's pickle names."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(member) if member else b""
        else:
            data = path.read_bytes()[: 1 << 24]
    except (OSError, zipfile.BadZipFile):
        return []
    names = pickle_globals(data, cut=True) or []
    out: list[str] = []
    for name in names:
        if not name.startswith(_WEIGHT_GLOBALS) and not name.endswith("Storage") \
                and name not in out:
            out.append(name)
    return out[:limit]


def load_pickled(path: Path) -> Any:
    """``torch.load(weights_only=False)``: runs the file's pickled code (trust_code only)."""
    try:
        return torch.load(str(path), weights_only=False, map_location="cpu")
    except Exception as exc:  # torch's unpickler (and the file's code) raise anything
        raise ModelLoadError(f"cannot load the pickled torch file: {_first(exc)}",
                             path=str(path),
                             hint="The file may be corrupt or need classes that cannot be "
                                  "imported here") from exc


def _refuse_text_pickle(path: Path) -> None:
    """Protocol 0/1 pickles: torch's weights_only loader cannot read them at all."""
    if zipfile.is_zipfile(path):
        return
    names = text_pickle_globals(path)
    if names is None:
        return
    unsafe = sorted({n for n in names if not n.startswith(("torch.", "collections."))})
    if unsafe:
        raise UnsafeModelError(
            "the file is a protocol 0/1 pickle that references "
            + ", ".join(unsafe[:5]) + "; unpickling it would run that code, so it was refused",
            path=str(path), hint="Pass --trust-code (trust_code=True) only if you trust the file")
    raise ModelLoadError(
        "the file is a pickle written with protocol 0 or 1, which torch's safe loader "
        "(weights_only=True) cannot read", path=str(path),
        hint="Re-save it with torch.save(model.state_dict(), path) (the default protocol) "
             "or as .safetensors")


def flatten_state(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap {"state_dict": {...}}-style checkpoints; refuse non-tensor content."""
    if isinstance(obj, Mapping) and not _all_tensors(obj):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and _all_tensors(inner):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise ModelLoadError(
            f"expected a state_dict (a mapping of names to tensors), found {type(obj).__name__}",
            path=str(path),
            hint="Whole pickled modules are not loaded; save model.state_dict() instead",
        )
    bad = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise ModelLoadError(
            f"the state_dict has non-tensor entries: {', '.join(bad[:10])}"
            + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else ""),
            path=str(path),
        )
    flat: dict[str, torch.Tensor] = OrderedDict((str(k), v) for k, v in obj.items())
    metadata = getattr(obj, "_metadata", None)
    if isinstance(metadata, Mapping):  # per-module versions, read by _load_from_state_dict
        flat._metadata = metadata  # type: ignore[attr-defined]
    return flat


def _all_tensors(obj: Mapping[Any, Any]) -> bool:
    return all(isinstance(v, torch.Tensor) for v in obj.values())


def check_safetensors_header(path: Path) -> dict[str, Any]:
    """Validate the safetensors header (size, JSON, dtypes, offsets) before loading."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelLoadError("file is too short to be safetensors", path=str(path))
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > _MAX_HEADER or n > size - 8:
            raise ModelLoadError(f"safetensors header length {n} is invalid for a file of "
                                 f"{size} bytes (truncated or corrupt)", path=str(path))
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"safetensors header is not valid JSON ({exc})",
                             path=str(path)) from exc
    if not isinstance(header, dict):
        raise ModelLoadError("safetensors header is not a JSON object", path=str(path))
    data_len = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        _check_entry(name, info, data_len, path)
    return header


def _check_entry(name: str, info: Any, data_len: int, path: Path) -> None:
    try:
        itemsize = _ST_DTYPES[info["dtype"]]
        begin, end = (int(x) for x in info["data_offsets"])
        count = 1
        for d in info["shape"]:
            if int(d) < 0:
                raise ValueError("negative dim")
            count *= int(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"safetensors entry '{name}' is malformed ({exc})",
                             path=str(path)) from exc
    if not 0 <= begin <= end <= data_len or end - begin != count * itemsize:
        raise ModelLoadError(
            f"safetensors entry '{name}' points outside the data or has the wrong size "
            f"(offsets {begin}..{end}, data is {data_len} bytes)", path=str(path),
        )


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, after checking its header."""
    check_safetensors_header(path)
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise ModelLoadError(f"cannot read safetensors: {_first(exc)}", path=str(path)) from exc


def build_architecture(spec: Any, path: Path | None = None) -> torch.nn.Module:
    """The nn.Module to load weights into: an instance, or "pkg.module:factory"."""
    if isinstance(spec, torch.nn.Module):
        return spec
    if isinstance(spec, str) and ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelLoadError(f"cannot import the architecture '{spec}': {exc}") from exc
        spec = factory
    if callable(spec):
        built = spec()
        if isinstance(built, torch.nn.Module):
            return built
    raise ModelLoadError(
        "a weights file needs the model architecture",
        path=str(path) if path else None,
        hint="Pass model=<nn.Module> or model='package.module:factory' (--model on the CLI)",
    )


def apply_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor],
                     path: Path) -> None:
    """Load ``state`` into ``module``; every key/shape problem is reported in one error."""
    module.load_state_dict(fit_state_dict(module, state, path), strict=False)


def fit_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor],
                   path: Path) -> dict[str, torch.Tensor]:
    """``state`` checked against ``module`` (and unwrapped from a ``module.`` prefix).

    Args:
        module: the architecture (real or with meta parameters).
        state: the file's tensors.
        path: the file, for errors.

    Returns:
        The state to pass to ``load_state_dict``, carrying the per-module versions.

    Raises:
        ModelLoadError: every missing/unexpected key and shape mismatch, in one error.
    """
    expected = module.state_dict()
    metadata = getattr(state, "_metadata", None)
    if state and all(k.startswith("module.") for k in state) and not any(
        k.startswith("module.") for k in expected
    ):
        state = {k[len("module."):]: v for k, v in state.items()}
        if metadata is not None:
            metadata = {_unwrap_prefix(k): v for k, v in metadata.items()}
    tied = _tied_aliases(expected, module)
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")
               and not any(alias in state for alias in tied.get(k, ()))]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
              for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:20]) + (f" (+{len(items) - 20} more)" if len(items) > 20
                                             else "")
            problems.append(f"{len(items)} {title}: {shown}")
    if problems:
        raise ModelLoadError("the weights do not fit the architecture; " + "; ".join(problems),
                             path=str(path),
                             hint="Check that the architecture matches the checkpoint")
    return _with_metadata(state, metadata, expected)


def _unwrap_prefix(key: str) -> str:
    """A ``_metadata`` key of a ``module.``-wrapped (DataParallel) checkpoint, unwrapped."""
    return "" if key == "module" else key.removeprefix("module.")


def _with_metadata(state: dict[str, torch.Tensor], metadata: Mapping[str, Any] | None,
                   expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` carrying the per-module versions ``load_state_dict`` reads.

    Modules such as torchvision's MNASNet refuse a state_dict without a version. A file
    that stores none (safetensors, or a dict rebuilt before saving) gets the versions of
    the freshly built architecture, i.e. it is taken to be of the current layout; versions
    the file does record win.
    """
    versions = dict(getattr(expected, "_metadata", None) or {})
    versions.update(metadata or {})
    out: dict[str, torch.Tensor] = OrderedDict(state)
    out._metadata = versions  # type: ignore[attr-defined]
    return out


def tie_groups(module: torch.nn.Module) -> list[list[str]]:
    """Names of parameters that are one object (tied weights), groups of two or more."""
    groups: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _tied_aliases(expected: dict[str, torch.Tensor],
                  module: torch.nn.Module) -> dict[str, list[str]]:
    """key -> other keys of the same tensor (tied weights: a file may store only one)."""
    if any(t.is_meta for t in expected.values()):  # meta tensors have no storage to compare
        return {k: [o for o in g if o != k] for g in tie_groups(module) for k in g}
    by_storage: dict[tuple[int, int | torch.SymInt, tuple[int, ...]], list[str]] = {}
    for key, tensor in expected.items():
        if tensor.numel():
            ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(),
                     tuple(tensor.shape))
            by_storage.setdefault(ident, []).append(key)
    return {k: [o for o in keys if o != k] for keys in by_storage.values() for k in keys}


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def as_path(src: Any) -> Path:
    """``src`` as an existing file path."""
    path = Path(os.fspath(src))
    if not path.is_file():
        raise ModelLoadError("file not found", path=str(path))
    return path
