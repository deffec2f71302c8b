"""The public API: convert, verify, inspect, load, save.

convert(src, dst) = detect → import → passes → export → verify, each stage timed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import onnx_ir as ir

from modelconv.errors import (
    ConversionTimeoutError,
    ExportError,
    MissingDependencyError,
    ModelLoadError,
    RunnerUnavailableError,
    UnsupportedFormatError,
)
from modelconv.fileio import check_output_path
from modelconv.formats import FORMATS, SourceModel, resolve_source_format, resolve_target_format
from modelconv.hooks import pause_point
from modelconv.ir.info import ModelInfo, graph_input_specs, graph_output_specs
from modelconv.option_checks import check_signature, check_source, check_target
from modelconv.options import ConvertOptions, options_docstring
from modelconv.verification.report import VerificationReport


class TorchModuleLike(Protocol):
    """What an in-memory source must look like (a ``torch.nn.Module``)."""

    def state_dict(self) -> Any:
        """The module's tensors."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation."""


#: a model file or folder, or an in-memory torch module
Source = str | os.PathLike[str] | TorchModuleLike


@dataclass
class ConversionResult:
    """What :func:`convert` produced."""

    outputs: list[Path]
    source_format: str
    target_format: str
    report: VerificationReport | None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def output(self) -> Path:
        """The main output file."""
        return self.outputs[0]

    @property
    def verified(self) -> bool:
        """True when verification ran and passed (False when skipped or not requested)."""
        return self.report is not None and not self.report.skipped and self.report.passed

    def __repr__(self) -> str:
        state = self.report.summary() if self.report else "not verified (verification off)"
        return (f"<ConversionResult {self.source_format} -> {self.target_format}: "
                f"{', '.join(str(p) for p in self.outputs)}; {state}>")

    def _repr_html_(self) -> str:
        import html

        files = ", ".join(html.escape(str(p)) for p in self.outputs)
        head = (f"<p><b>{html.escape(self.source_format)} &rarr; "
                f"{html.escape(self.target_format)}</b>: {files}</p>")
        warnings = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
        body = self.report._repr_html_() if self.report is not None else \
            "<p>not verified (verification off)</p>"
        return f"<div>{head}{body}<ul>{warnings}</ul></div>"


def load(src: Source, options: ConvertOptions | None = None, **kwargs: Any) -> SourceModel:
    """Import ``src`` (a file, folder or in-memory model) into the IR.

    Args:
        src: a model file or SavedModel folder (format detected by content), or an
            in-memory ``torch.nn.Module``.
        options: conversion options (keyword arguments override its fields).
        **kwargs: :class:`~modelconv.options.ConvertOptions` fields.

    Returns:
        The imported model: the IR, the source format and a way to run the original.

    Raises:
        UnsupportedFormatError: the content is not a format modelconv reads.
        ModelLoadError: the file is corrupt, truncated or unreadable.
        UnsafeModelError: loading it would execute code (see ``trust_code``).
        UnsupportedOpsError: ops or layers without a handler (all listed at once).
        OptionsError: an option the source's importer would ignore.
        MissingDependencyError: the extra the format needs is not installed.
    """
    opts = ConvertOptions.from_kwargs(options, **kwargs)
    path: Path | None = None
    if _is_torch_module(src):
        fmt = "torch-module"
    else:
        if not isinstance(src, (str, os.PathLike)):
            raise UnsupportedFormatError(
                f"cannot convert a {type(src).__name__}: give a model file or folder path, "
                "or a torch.nn.Module")
        path = Path(src)
        fmt = resolve_source_format(path, opts.source_format)
    check_source(opts, fmt)
    opts.report_progress("import:modules", 0.0)  # torch / tensorflow load here, cold: seconds
    importer = _component(fmt, "importer")
    opts.report_progress("import:modules", 1.0)
    where = None if fmt == "torch-module" else str(src)
    # Only errors that mean "this file cannot be read" become ModelLoadError: modelconv's
    # readers raise ModelLoadError for bad content themselves. Any other exception is a bug
    # in modelconv and surfaces as one (the CLI's internal-error message).
    try:
        source: SourceModel = importer(src if path is None else path, opts)
    except OSError as exc:
        if exc.errno != errno.ENOMEM:
            raise ModelLoadError(f"cannot read the {fmt} model: {_first_line(exc) or exc!r}",
                                 path=where, hint="Check that the file is complete and readable"
                                 ) from exc
        raise ModelLoadError(f"ran out of memory reading the {fmt} model", path=where,
                             hint="The model, or a size it declares, does not fit in memory"
                             ) from exc
    except MemoryError as exc:
        raise ModelLoadError(f"ran out of memory reading the {fmt} model", path=where,
                             hint="The model, or a size it declares, does not fit in memory"
                             ) from exc
    if opts.input_names is not None or opts.output_names is not None:
        from modelconv.ir.naming import rename_io

        before = [v.name or "" for v in source.model.graph.inputs]
        rename_io(source.model, opts.input_names, opts.output_names)
        moved = dict(zip(before, (v.name or "" for v in source.model.graph.inputs),
                         strict=True))
        source.int_ranges = {moved.get(k, k): r for k, r in source.int_ranges.items()}
    return source


def save(model: ir.Model | SourceModel, dst: str | os.PathLike[str],
         options: ConvertOptions | None = None, **kwargs: Any) -> list[Path]:
    """Write an IR model (or an imported SourceModel) to ``dst``.

    Args:
        model: the IR model, or what :func:`load` returned.
        dst: the output path; its extension (or ``target_format``) picks the format.
        options: conversion options (keyword arguments override its fields).
        **kwargs: :class:`~modelconv.options.ConvertOptions` fields.

    Returns:
        The files written (the model, and external data if any).

    Raises:
        OutputExistsError: ``dst`` exists and ``overwrite`` is not set.
        UnsupportedOpsError: ops the target cannot express (all listed at once).
        ExportError: the file could not be written.
        MissingDependencyError: the target's extra is not installed.
    """
    opts = ConvertOptions.from_kwargs(options, **kwargs)
    ir_model = model.model if isinstance(model, SourceModel) else model
    dst_path = check_output_path(dst, overwrite=opts.overwrite)
    fmt = resolve_target_format(dst_path, opts.target_format)
    exporter = _component(fmt, "exporter")
    # as in load(): only "cannot write" errors are ExportError; anything else is a bug
    try:
        written: list[Path] = exporter(ir_model, dst_path, opts)
    except OSError as exc:
        if exc.errno != errno.ENOMEM:
            raise ExportError(f"cannot write the {fmt} model: {_first_line(exc) or exc!r}",
                              path=str(dst_path), hint="Check the free space and permissions"
                              ) from exc
        raise ExportError(f"ran out of memory writing the {fmt} model", path=str(dst_path),
                          hint="Convert on a machine with more memory") from exc
    except MemoryError as exc:
        raise ExportError(f"ran out of memory writing the {fmt} model", path=str(dst_path),
                          hint="Convert on a machine with more memory") from exc
    return written


def convert(
    src: Source, dst: str | os.PathLike[str], options: ConvertOptions | None = None,
    **kwargs: Any,
) -> ConversionResult:
    """Convert ``src`` to ``dst`` (format from the extension or ``target_format``) and verify.

    Verification runs by default (``verify=False`` skips it). When the converted model
    differs from the source beyond tolerance, :class:`~modelconv.errors.VerificationError`
    is raised with the report; the written file stays for inspection.

    Args:
        src: The source: a model file or folder, or an in-memory model (``nn.Module``).
        dst: The output file.
        options: A :class:`~modelconv.options.ConvertOptions`; keyword arguments override it.
        **kwargs: Any ConvertOptions field (listed under Keyword Args).

    Returns:
        A :class:`ConversionResult` (files written, formats, timings, warnings, report).

    Raises:
        ModelconvError: a subclass naming what failed (e.g. ``VerificationError`` when the
            outputs differ beyond tolerance, ``OptionsError`` for options the route ignores).
    """
    opts = ConvertOptions.from_kwargs(options, **kwargs)
    dst_path = check_output_path(dst, overwrite=opts.overwrite)
    target = resolve_target_format(dst_path, opts.target_format)
    from modelconv.calibration import check_calibration

    check_target(opts, target)
    calibration_warning = check_calibration(opts.quantize, opts.calibration)
    timings: dict[str, float] = {}
    with _time_limit(opts.timeout):
        with _stage(timings, "import", opts):
            source = load(src, opts)
            if opts.verify or target == "tflite":  # TFLite pins dynamic dims with them
                check_signature(opts, graph_input_specs(source.model.graph))
        from modelconv.passes import cleanup

        with _stage(timings, "passes", opts):
            warnings = list(source.warnings) + cleanup(source.model)
        if calibration_warning:
            warnings.append(calibration_warning)
        with _stage(timings, "export", opts):
            outputs = save(source.model, dst_path, opts, target_format=target)
        report = None
        try:
            if opts.verify:
                with _stage(timings, "verify", opts):
                    pause_point("verify")
                    report = _verify_written(source, outputs[0], target, opts)
        except BaseException as exc:  # also KeyboardInterrupt / SIGTERM (see cli.py)
            from modelconv.errors import VerificationError

            if not isinstance(exc, VerificationError):
                _remove(outputs)  # an unverified conversion leaves nothing behind
            raise
    timings["total"] = sum(timings.values())
    result = ConversionResult(outputs, source.format, target, report, warnings, timings)
    if report is not None and not report.skipped and not report.passed:
        from modelconv.errors import VerificationError

        raise VerificationError(
            f"the converted model differs from the source: {report.summary()}",
            report=report, path=str(outputs[0]),
            hint="The file was written for inspection; run `modelconv verify --localize`",
        )
    return result


def verify(
    src: Source, dst: str | os.PathLike[str], inputs: Any = None,
    options: ConvertOptions | None = None, *, reference: Any = None, **kwargs: Any,
) -> VerificationReport:
    """Run ``src`` and the converted ``dst`` on the same inputs and compare their outputs.

    The tolerance follows ``dst``'s precision, read from the file (fp16 weights,
    dynamic-range int8, full int8), as :func:`convert` picks it; ``rtol``/``atol`` override.

    Args:
        src: the source model (path or in-memory torch module).
        dst: the converted file (.onnx or .tflite).
        inputs: samples (.npz / .npy / folder / arrays); default: generated ones.
        options: a :class:`ConvertOptions` (keyword arguments override its fields).
        reference: expected outputs recorded elsewhere (.npz keyed by output names or
            ``output_0``...; needs ``inputs``): compared instead of running ``src``.

    Returns:
        The report; ``skipped`` (and not ``passed``) when the source cannot run here.

    Raises:
        SignatureMismatchError: the two models' inputs/outputs do not correspond.
        ModelconvError: a model cannot be read or run.
    """
    opts = ConvertOptions.from_kwargs(options, **kwargs)
    if inputs is not None:
        opts.inputs = inputs
    if reference is not None:
        opts.reference = reference
    target = resolve_source_format(dst, None) if Path(dst).suffix != ".tflite" else "tflite"
    check_target(opts, target)
    stages: dict[str, float] = {}
    with _stage(stages, "import", opts):
        source = load(src, opts)
    check_signature(opts, graph_input_specs(source.model.graph))
    with _stage(stages, "verify", opts):
        report = _verify_written(source, Path(dst), target, opts)
    return report


#: how to verify when the source cannot run here (shown with a skipped verification)
VERIFY_ANYWAY = ("to verify anyway, run the source where it works, save its outputs for "
                 "inputs X.npz to OUTPUTS.npz (keys = output names), then: modelconv verify "
                 "SRC DST --inputs X.npz --reference OUTPUTS.npz")


def _verify_written(source: SourceModel, out: Path, target: str,
                    opts: ConvertOptions) -> VerificationReport:
    from modelconv.ir.info import infer_int_ranges
    from modelconv.verification.precision import file_precision, loosest
    from modelconv.verification.verifier import mode_for, verify_reference, verify_runners

    in_turn = _verify_in_turn(source, out, target, opts)
    if in_turn is not None:
        return in_turn
    try:
        target_runner = _component(target, "runner")(out, opts)
    except MissingDependencyError as exc:
        return _skipped(str(exc), source, out)
    mode = loosest(mode_for(opts), file_precision(out, target))
    if opts.reference is not None:
        report = verify_reference(target_runner, opts, opts.reference, mode)
        return _name_files(report, source, out)
    if source.make_runner is None:
        return _skipped(source.runner_unavailable or f"no runner for {source.format} sources",
                        source, out)
    try:
        source_runner = source.make_runner()
    except MissingDependencyError as exc:
        return _skipped(str(exc), source, out)
    # the importer's ranges, plus index inputs found in the IR (also seen by localize)
    source.int_ranges = {**infer_int_ranges(source.model.graph), **source.int_ranges}
    try:
        report = verify_runners(source_runner, target_runner, opts,
                                int_ranges=source.int_ranges, mode=mode)
    except RunnerUnavailableError as exc:
        return _skipped(exc.message, source, out)
    _name_files(report, source, out)
    if opts.localize or not report.passed:
        from modelconv.verification.localize import localize

        localize(report, source, source_runner, target_runner, out, opts)
    return report


def _verify_in_turn(source: SourceModel, out: Path, target: str,
                    opts: ConvertOptions) -> VerificationReport | None:
    """Large models: source, then converted model, one after the other (see in_turn.py)."""
    from modelconv.verification import in_turn as it

    size = it.weights_bytes(source.model)
    if opts.reference is not None or opts.localize or source.make_runner is None \
            or size < it.IN_TURN_FROM_BYTES:
        return None
    from modelconv.ir.info import infer_int_ranges
    from modelconv.verification.precision import file_precision, loosest
    from modelconv.verification.verifier import mode_for

    mode = loosest(mode_for(opts), file_precision(out, target))
    source.int_ranges = {**infer_int_ranges(source.model.graph), **source.int_ranges}
    try:
        report = it.verify_in_turn(source.make_runner,
                                   lambda: _component(target, "runner")(out, opts), opts, mode,
                                   int_ranges=source.int_ranges, weights_bytes=size)
    except (MissingDependencyError, RunnerUnavailableError) as exc:
        return _skipped(exc.message, source, out)
    return _name_files(report, source, out)


def _name_files(report: VerificationReport, source: SourceModel,
                out: Path) -> VerificationReport:
    report.source_path, report.target_path = source.path or "", str(out)
    return report


def _skipped(reason: str, source: SourceModel, out: Path) -> VerificationReport:
    report = VerificationReport.skip(reason)
    report.notes.append(VERIFY_ANYWAY)
    return _name_files(report, source, out)


def inspect(path: str | os.PathLike[str], options: ConvertOptions | None = None,
            **kwargs: Any) -> ModelInfo:
    """Describe a model file: format, signature, op counts, parameters.

    Output shapes the importer leaves unknown are inferred; ``opset`` is given for ONNX
    files only and ``producer`` is what the file says (e.g. ``Keras 3.10.0``). Weights files
    (``.safetensors``, state_dict ``.pt/.pth``) without ``model`` list their tensors.

    Args:
        path: The model file or folder.
        options: A :class:`~modelconv.options.ConvertOptions` (keyword arguments override).
        **kwargs: ConvertOptions fields (e.g. ``model``, ``input_shapes``, ``source_format``).

    Returns:
        A :class:`~modelconv.ir.info.ModelInfo` (JSON schema: docs/inspect.md).

    Raises:
        ModelconvError: the file cannot be read (a subclass naming why).
    """
    p = Path(path)
    opts = ConvertOptions.from_kwargs(options, **kwargs)
    fmt = resolve_source_format(p, opts.source_format) if p.suffix != ".tflite" else "tflite"
    if fmt == "tflite":
        try:
            from modelconv.exporters.tflite.inspect import inspect_tflite
        except ImportError as exc:  # the package registers its lowerings: needs the extra
            raise MissingDependencyError("ai-edge-litert", "tflite",
                                         "Inspecting .tflite") from exc
        return inspect_tflite(p)
    from modelconv.inspection import infer_output_shapes, inspect_weights, source_producer

    # weights without an architecture: list the tensors (a trusted .pt may hold a module)
    if opts.model is None and (fmt == "safetensors"
                               or (fmt == "state_dict" and not opts.trust_code)):
        return inspect_weights(p, fmt)
    source = load(p, opts, verify=False)
    infer_output_shapes(source.model)
    graph = source.model.graph
    ops = Counter(n.op_type if not n.domain else f"{n.domain}::{n.op_type}"
                  for n in ir.traversal.RecursiveGraphIterator(graph))
    params = [v.const_value for v in graph.initializers.values() if v.const_value is not None]
    return ModelInfo(
        path=str(p), format=fmt, inputs=graph_input_specs(graph),
        outputs=graph_output_specs(graph), op_counts=dict(sorted(ops.items())),
        num_parameters=sum(t.size for t in params), parameter_bytes=sum(t.nbytes for t in params),
        opset=source.model.opset_imports.get("") if fmt == "onnx" else None,
        producer=(source.model.producer_name if fmt == "onnx"
                  else source_producer(p, fmt)),
    )


convert.__doc__ = (convert.__doc__ or "") + "\n" + options_docstring()


def _component(fmt: str, which: str) -> Any:
    info = FORMATS[fmt]
    try:
        return info.load(which)
    except ImportError as exc:
        missing = (exc.name or "a dependency").split(".")[0]
        raise MissingDependencyError(missing, info.extra or "all",
                                     f"the {fmt} {which}") from exc


def _is_torch_module(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] != "pathlib" and hasattr(obj, "state_dict") \
        and hasattr(obj, "forward") and not isinstance(obj, (str, os.PathLike))


@contextlib.contextmanager
def _stage(timings: dict[str, float], name: str, opts: ConvertOptions) -> Iterator[None]:
    opts.report_progress(name, 0.0)
    start = time.perf_counter()
    outer = opts.progress
    if outer is not None:  # "done" is this function's to say, once the stage returned
        def inner(stage: str, fraction: float) -> None:
            outer(stage, min(fraction, 0.99) if stage == name else fraction)

        opts.progress = inner
    try:
        yield
    finally:
        opts.progress = outer
        timings[name] = time.perf_counter() - start
    opts.report_progress(name, 1.0)  # only when the stage succeeded


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ConversionTimeoutError after ``seconds`` (main thread, POSIX only)."""
    if not seconds or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "SIGALRM"):
        yield
        return

    fired = False

    def timeout_error() -> ConversionTimeoutError:
        return ConversionTimeoutError(f"conversion exceeded the time limit of {seconds:g} s",
                                      hint="Raise --timeout or convert on a bigger machine")

    def on_alarm(signum: int, frame: Any) -> None:
        nonlocal fired
        fired = True
        raise timeout_error()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except ConversionTimeoutError:
        raise
    except Exception as exc:
        if fired:  # the alarm hit inside code that re-wrapped it
            raise timeout_error() from exc
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _remove(paths: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
