"""PyTorch importers: nn.Module, state_dict, safetensors, TorchScript and .pt2 -> IR.

Every route ends in a ``torch.export.ExportedProgram`` that is lowered op by op
(see :mod:`modelconv.importers.torch.lower` and the ``aten/ops_*.py`` handlers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from modelconv.errors import ModelconvError, ModelLoadError, UnsafeModelError
from modelconv.formats import SourceModel
from modelconv.options import ConvertOptions

from .capture import (
    dynamic_shapes_spec,
    example_inputs,
    export_module,
    forward_arg_names,
    requested_dims,
)
from .lower import embedding_ranges, lower_program, placeholder_symbols, prepare
from .sources import (
    apply_state_dict,
    as_path,
    build_architecture,
    check_pt2_archive,
    load_safetensors,
    load_torch_weights,
)

__all__ = [
    "import_exported_program",
    "import_pt2",
    "import_safetensors",
    "import_state_dict",
    "import_torch_module",
    "import_torchscript",
]


def import_exported_program(
    ep: torch.export.ExportedProgram,
    options: ConvertOptions,
    *,
    format: str = "pt2",
    path: str | None = None,
    eager: Any = None,
    wanted: Mapping[str, Mapping[int, str]] | None = None,
) -> SourceModel:
    """Lower an ExportedProgram; ``eager`` (if given) is what the verification runner runs."""
    options.report_progress("import", 0.3)
    try:
        prepared = prepare(ep)
    except ModelconvError:
        raise
    except Exception as exc:
        raise ModelconvError(f"decomposing the exported program failed: {exc}") from exc
    options.report_progress("import", 0.6)
    model = lower_program(prepared, placeholder_symbols(prepared, wanted or {}))
    options.report_progress("import", 1.0)

    def make_runner() -> Any:
        from modelconv.verification.runners_torch import TorchRunner

        return TorchRunner.for_model(model, eager if eager is not None else prepared,
                                     program=prepared)

    return SourceModel(model=model, format=format, path=path, make_runner=make_runner,
                       int_ranges=embedding_ranges(prepared))


def import_torch_module(src: Any, options: ConvertOptions) -> SourceModel:
    """Import an in-memory ``nn.Module`` traced with ``options`` example inputs/shapes."""
    if not isinstance(src, torch.nn.Module):
        raise ModelLoadError(f"expected a torch.nn.Module, got {type(src).__name__}")
    return _import_module(src, options, "torch-module", None)


def _import_module(module: torch.nn.Module, options: ConvertOptions, fmt: str,
                   path: str | None) -> SourceModel:
    args = example_inputs(module, options)
    names = forward_arg_names(module, len(args))
    wanted = requested_dims(names, options)
    traced_args, dynamic = dynamic_shapes_spec(args, names, wanted)
    ep = export_module(module, traced_args, dynamic)
    return import_exported_program(ep, options, format=fmt, path=path, eager=module,
                                   wanted=wanted)


def import_state_dict(src: Any, options: ConvertOptions) -> SourceModel:
    """Import a torch.save'd state_dict (weights_only) into ``options.model``."""
    return _import_weights(as_path(src), options, "state_dict", load_torch_weights)


def import_safetensors(src: Any, options: ConvertOptions) -> SourceModel:
    """Import a .safetensors file into ``options.model``."""
    return _import_weights(as_path(src), options, "safetensors", load_safetensors)


def _import_weights(path: Path, options: ConvertOptions, fmt: str,
                    read: Callable[[Path], dict[str, torch.Tensor]]) -> SourceModel:
    state = read(path)
    module = build_architecture(options.model, path)
    apply_state_dict(module, state, path)
    return _import_module(module, options, fmt, str(path))


def import_torchscript(src: Any, options: ConvertOptions) -> SourceModel:
    """Import a TorchScript archive; it contains code, so ``trust_code`` is required."""
    path = as_path(src)
    if not options.trust_code:
        raise UnsafeModelError(
            "TorchScript archives contain code that runs when loaded; refused",
            path=str(path),
            hint="Pass trust_code=True (--trust-code) only if you trust the file, or "
            "export a state_dict/safetensors or a torch.export .pt2 instead",
        )
    try:
        ts = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(f"cannot load TorchScript: {exc}", path=str(path)) from exc
    ts.eval()
    args = example_inputs(ts, options)
    names = forward_arg_names(ts, len(args))
    wanted = requested_dims(names, options)
    ep = _torchscript_program(ts, args, names, wanted)
    return import_exported_program(ep, options, format="torchscript", path=str(path),
                                   eager=ts, wanted=wanted)


def _torchscript_program(ts: Any, args: tuple[torch.Tensor, ...], names: list[str],
                         wanted: dict[str, dict[int, str]]) -> torch.export.ExportedProgram:
    errors = []
    if not wanted:  # the converter has no dynamic shapes
        try:
            from torch._export.converter import TS2EPConverter

            with torch.no_grad():
                return TS2EPConverter(ts, args).convert()
        except Exception as exc:
            errors.append(f"TS2EPConverter: {str(exc).strip().splitlines()[0:1]}")
    traced_args, dynamic = dynamic_shapes_spec(args, names, wanted)
    try:
        return export_module(ts, traced_args, dynamic)
    except ModelconvError as exc:
        raise ModelLoadError("cannot capture the TorchScript module: "
                             + "; ".join([*errors, str(exc)])) from exc


def import_pt2(src: Any, options: ConvertOptions) -> SourceModel:
    """Import a torch.export ``.pt2`` archive (refusing pickled payloads without trust)."""
    path = as_path(src)
    check_pt2_archive(path, options.trust_code)
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"cannot load the .pt2 archive: {exc}", path=str(path)) from exc
    sm = import_exported_program(ep, options, format="pt2", path=str(path),
                                 eager=ep.module())
    if options.dynamic_batch or options.dynamic_dims:
        sm.warnings.append(".pt2 programs keep the dynamic dims they were exported with; "
                           "dynamic_batch/dynamic_dims were ignored")
    return sm
