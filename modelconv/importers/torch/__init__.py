"""PyTorch importers: nn.Module, state_dict, safetensors, TorchScript and .pt2 -> IR.

Every route ends in a ``torch.export.ExportedProgram`` that is lowered op by op
(see :mod:`modelconv.importers.torch.lower` and the ``aten/ops_*.py`` handlers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from modelconv.errors import ModelconvError, ModelLoadError, ShapeError, UnsafeModelError
from modelconv.formats import SourceModel
from modelconv.options import ConvertOptions

from .capture import (
    BoundInputs,
    bind_inputs,
    capture_dynamic,
    dynamic_shapes_spec,
    eval_mode,
    export_module,
    requested_dims,
)
from .fastcapture import FastCaptureRefused, capture_mode, fast_capture
from .lazy_weights import mapped_module, mapped_safetensors, mapped_state_dict
from .lower import (
    embedding_ranges,
    lower_program,
    needs_decomposition,
    placeholder_symbols,
    prepare,
)
from .pt2_audit import check_pt2_archive, disarm_program
from .sources import (
    apply_state_dict,
    as_path,
    build_architecture,
    check_safetensors_header,
    flatten_state,
    load_pickled,
    load_safetensors,
    load_torch_weights,
)
from .ts_shapes import specialise_shapes


@contextlib.contextmanager
def _step(options: ConvertOptions, name: str) -> Iterator[None]:
    """Progress of one step of the import (``import:capture``...), said when it starts and
    when it ends: the CLI prints both, so a slow step is named while it runs."""
    options.report_progress(f"import:{name}", 0.0)
    yield
    options.report_progress(f"import:{name}", 1.0)


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
    input_names: Sequence[str] | None = None,
    by_keyword: bool = False,
    warnings: Sequence[str] = (),
) -> SourceModel:
    """Lower an ExportedProgram; ``eager`` (if given) is what the verification runner runs.

    Args:
        ep: the program.
        options: the conversion options.
        format: the source format name for the report.
        path: the source file, if any.
        eager: the callable the verification runs (default: the program).
        wanted: requested dynamic dims ``{placeholder: {axis: name}}``.
        input_names: IR names of the user inputs, in order (default: placeholder names).
        by_keyword: the eager callable takes its inputs as keyword arguments.
        warnings: warnings gathered while capturing.

    Returns:
        The imported model.

    Raises:
        ModelconvError: decomposition or lowering failed.
        UnsupportedOpsError: ops without a handler (all of them listed).
    """
    options.report_progress("import", 0.3)
    if needs_decomposition(ep):
        with _step(options, "decompose"):
            try:
                prepared = prepare(ep)
            except ModelconvError:
                raise
            except Exception as exc:
                raise ModelconvError(f"decomposing the exported program failed: {exc}") from exc
    else:
        prepared = ep
    options.report_progress("import", 0.6)
    with _step(options, "lower"):
        model = lower_program(prepared, placeholder_symbols(prepared, wanted or {}),
                              input_names=input_names)
    options.report_progress("import", 1.0)
    arg_names = list(input_names or []) if by_keyword else None

    def make_runner() -> Any:
        from modelconv.verification.runners_torch import TorchRunner

        return TorchRunner.for_model(model, eager if eager is not None else prepared,
                                     program=prepared, arg_names=arg_names)

    ranges = embedding_ranges(prepared)
    if input_names is not None:  # ranges are keyed by placeholder; the IR uses input_names
        users = list(prepared.graph_signature.user_inputs)
        rename = dict(zip(users, input_names, strict=False))
        ranges = {rename.get(k, k): v for k, v in ranges.items()}
    return SourceModel(model=model, format=format, path=path, make_runner=make_runner,
                       int_ranges=ranges, warnings=list(warnings))


def import_torch_module(src: Any, options: ConvertOptions) -> SourceModel:
    """Import an in-memory ``nn.Module`` traced with ``options`` example inputs/shapes."""
    if not isinstance(src, torch.nn.Module):
        raise ModelLoadError(f"expected a torch.nn.Module, got {type(src).__name__}")
    return _import_module(src, options, "torch-module", None)


def _import_module(module: torch.nn.Module, options: ConvertOptions, fmt: str,
                   path: str | None) -> SourceModel:
    options.report_progress("import", 0.05)
    bound = bind_inputs(module, options)
    wanted = requested_dims(bound.names, options)
    ep, warnings = capture(module, bound, wanted, options)
    return import_exported_program(ep, options, format=fmt, path=path, eager=module,
                                   wanted=wanted, input_names=bound.names,
                                   by_keyword=bound.by_keyword, warnings=warnings)


def capture(module: torch.nn.Module, bound: BoundInputs, wanted: dict[str, dict[int, str]],
            options: ConvertOptions) -> tuple[Any, list[str]]:
    """The module's program: the fast recording where it can vouch for the graph, else
    torch.export (see :mod:`.fastcapture`; ``MODELCONV_TORCH_CAPTURE`` forces either).

    Args:
        module: the module to capture.
        bound: its example inputs.
        wanted: requested dynamic dims (any makes it torch.export).
        options: the conversion options.

    Returns:
        The program (an ExportedProgram or a FastProgram) and warnings to show.

    Raises:
        ShapeError: requested dynamic dims do not fit the model.
        ModelconvError: the capture failed (with ``fast`` forced: why the fast one refused).
    """
    with _step(options, "capture"):
        return _capture(module, bound, wanted, options)


def _capture(module: torch.nn.Module, bound: BoundInputs, wanted: dict[str, dict[int, str]],
             options: ConvertOptions) -> tuple[Any, list[str]]:
    mode = capture_mode()
    if mode != "export":
        try:
            if wanted:
                raise FastCaptureRefused("dynamic dims need torch.export's symbolic shapes")
            with eval_mode(module):
                return fast_capture(module, bound.args, bound.names,
                                    by_keyword=bound.by_keyword), []
        except FastCaptureRefused:
            if mode == "fast":
                raise
    return capture_dynamic(module, bound, wanted, options)


def import_state_dict(src: Any, options: ConvertOptions) -> SourceModel:
    """Import a torch.save'd state_dict (weights_only) into ``options.model``.

    With ``trust_code`` the file is loaded with ``torch.load(weights_only=False)``, which runs
    its pickled code: a whole pickled ``nn.Module`` is then imported as it is.
    """
    path = as_path(src)
    if options.trust_code:
        obj = load_pickled(path)
        if isinstance(obj, torch.nn.Module):
            return _import_module(obj.eval(), options, "state_dict", str(path))
        return _import_weights(path, options, "state_dict", lambda p: flatten_state(obj, p))
    return _import_weights(path, options, "state_dict", load_torch_weights, mapped_state_dict)


def import_safetensors(src: Any, options: ConvertOptions) -> SourceModel:
    """Import a .safetensors file into ``options.model``."""
    return _import_weights(as_path(src), options, "safetensors", load_safetensors,
                           lambda p: mapped_safetensors(p, check_safetensors_header(p)))


def _import_weights(path: Path, options: ConvertOptions, fmt: str,
                    read: Callable[[Path], dict[str, torch.Tensor]],
                    mapped: Callable[[Path], dict[str, torch.Tensor] | None] | None = None,
                    ) -> SourceModel:
    """The weights in ``path`` loaded into the architecture ``options.model``, imported.

    With a factory (not an instance) and a file torch can map, the module is built with
    meta parameters and the file's pages become its weights (:mod:`.lazy_weights`): the
    weights are never copied into memory. Otherwise they are read and copied in.
    """
    notes: list[str] = []
    state = None
    if mapped is not None and not isinstance(options.model, torch.nn.Module):
        with _step(options, "weights"):
            state = mapped(path)
    if state is not None:
        with _step(options, "architecture"):
            module, why = mapped_module(options.model, path, state)
        if module is not None:
            return _import_module(module, options, fmt, str(path))
        notes.append(f"weights copied into memory, not mapped from the file: {why}")
    with _step(options, "weights"):
        state = read(path)
    with _step(options, "architecture"):
        module = build_architecture(options.model, path)
    with _step(options, "load"):
        apply_state_dict(module, state, path)
    sm = _import_module(module, options, fmt, str(path))
    sm.warnings = [*notes, *sm.warnings]
    return sm


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
    bound = bind_inputs(ts, options)
    args, names = bound.args, bound.names
    wanted = requested_dims(names, options)
    with _step(options, "capture"):
        ep = _torchscript_program(ts, args, names, wanted, options)
    # the converted program may rename inputs (x -> x_1): match them by position
    users = list(ep.graph_signature.user_inputs)
    if len(users) == len(names):
        wanted = {users[names.index(k)]: v for k, v in wanted.items()}
    return import_exported_program(ep, options, format="torchscript", path=str(path),
                                   eager=ts, wanted=wanted,
                                   input_names=names if len(users) == len(names) else None)


def _torchscript_program(ts: Any, args: tuple[torch.Tensor, ...], names: list[str],
                         wanted: dict[str, dict[int, str]],
                         options: ConvertOptions) -> torch.export.ExportedProgram:
    """TS2EPConverter (static shapes only), then torch.export; every attempt's error is kept."""
    errors: list[str] = []
    if not wanted:  # the converter has no dynamic shapes, so the example shapes are final
        attempts: list[tuple[str, Any]] = []
        try:
            specialised = specialise_shapes(ts, args)
        except Exception as exc:
            errors.append(f"specialising the graph to the example shapes: {_first_line(exc)}")
        else:
            if specialised is not None:
                attempts.append(("TS2EPConverter on the graph specialised to the example "
                                 "shapes", specialised))
        attempts.append(("TS2EPConverter", ts))
        for label, module in attempts:
            try:
                with torch.no_grad():
                    return _ts2ep(module, args)
            except Exception as exc:
                errors.append(f"{label}: {_first_line(exc)}")
    traced_args, dynamic = dynamic_shapes_spec(args, names, wanted, options.dim_ranges)
    if wanted:  # dynamic dims: convert (dims stay Dim.AUTO), then re-export with the spec
        try:
            from torch._export.converter import TS2EPConverter

            with torch.no_grad():
                program = TS2EPConverter(ts, traced_args).convert()
            return export_module(program.module(), traced_args, dynamic)
        except Exception as exc:
            errors.append(f"TS2EPConverter with dynamic dims: {_first_line(exc)}")
    try:
        return export_module(ts, traced_args, dynamic)
    except ModelconvError as exc:
        raise ModelLoadError("cannot capture the TorchScript module: "
                             + "; ".join([*errors, str(exc)])) from exc


def _ts2ep(module: Any, args: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    """The TorchScript module converted with its example shapes final.

    The converter's trace with static shapes (:mod:`.ts_static`) comes first; should it fail,
    torch's own converter, which marks every input dim ``Dim.AUTO``: dims the code does not
    specialise stay symbolic, so such a program is re-exported with static shapes (none were
    asked for); if that fails the converter's program is kept.
    """
    from torch._export.converter import TS2EPConverter

    from .ts_static import StaticConverter

    try:
        static: torch.export.ExportedProgram = StaticConverter(module, args).convert()
        return static
    except Exception:  # torch's converter below says why, or succeeds where this failed
        pass
    program: torch.export.ExportedProgram = TS2EPConverter(module, args).convert()
    if not _symbolic_inputs(program):
        return program
    try:
        return torch.export.export(program.module(), args, strict=False)
    except Exception:
        return program


def _symbolic_inputs(program: torch.export.ExportedProgram) -> bool:
    users = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        val = node.meta.get("val") if node.op == "placeholder" and node.name in users else None
        if isinstance(val, torch.Tensor) and any(isinstance(d, torch.SymInt)
                                                 for d in val.shape):
            return True
    return False


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def import_pt2(src: Any, options: ConvertOptions) -> SourceModel:
    """Import a torch.export ``.pt2`` archive (refusing pickled payloads without trust)."""
    path = as_path(src)
    if options.dynamic_batch or options.dynamic_dims or options.dim_ranges:
        raise ShapeError(
            "a .pt2 program keeps the dynamic dims it was exported with; "
            "--dynamic-batch / --dynamic-dim cannot change them",
            path=str(path), hint="Drop the flag, or re-export the program with "
            "torch.export.export(..., dynamic_shapes=...)")
    check_pt2_archive(path, options.trust_code)
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"cannot load the .pt2 archive: {_first_line(exc)}",
                             path=str(path)) from exc
    if not options.trust_code:
        disarm_program(ep)  # before anything calls ep.module(), which builds the guards
    sm = import_exported_program(ep, options, format="pt2", path=str(path),
                                 eager=ep.module())
    return sm
