"""Run a source and a converted model on the same inputs and build the report.

Samples: the user's (``inputs``), the calibration data for an int8 model calibrated on a
file, or ``options.samples`` seeded samples (seeds ``seed``, ``seed + 1``...) plus one of
batch 2 when both models take a dynamic batch. The expected outputs come from running
the source, or from recorded outputs (``reference``) when the source cannot run here.

The two signatures must correspond (:func:`align_inputs`): the same number of inputs and
outputs, matched by name when both sides use the same names, else by position, with
compatible static shapes (a channels-last converted model, ``nhwc_io``, is fed transposed
inputs and its outputs are transposed back). Otherwise :class:`SignatureMismatchError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import (
    ModelconvError,
    ModelLoadError,
    RunnerUnavailableError,
    ShapeError,
    SignatureMismatchError,
    VerificationError,
)
from modelconv.ir.info import TensorSpec
from modelconv.options import ConvertOptions
from modelconv.verification.compare import (
    OutputMetrics,
    Tolerance,
    compare_arrays,
    merge_metrics,
    tolerance_for,
)
from modelconv.verification.inputs import (
    generate_inputs,
    load_inputs,
    load_reference,
    split_samples,
)
from modelconv.verification.report import VerificationReport
from modelconv.verification.runners import Runner

#: calibration samples an int8 model is verified on, at most
MAX_CALIBRATION_SAMPLES = 8
_CHANNELS_LAST = {4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}


def mode_for(options: ConvertOptions) -> str:
    """Tolerance mode implied by the conversion options."""
    if options.quantize in ("int8", "dynamic"):
        return options.quantize
    return "float16" if options.fp16 else "float32"


def _calibration_file(options: ConvertOptions) -> Path | None:
    cal = options.calibration
    if options.quantize != "int8" or cal is None or str(cal) == "random":
        return None
    return Path(cal)


def sample_inputs(
    source: Runner, options: ConvertOptions, int_ranges: Mapping[str, tuple[int, int]] | None,
    target: Runner | None = None,
) -> list[list[np.ndarray]]:
    """The verification samples, in ``source``'s input order.

    Args:
        source: the runner whose input signature the samples follow.
        options: ``inputs``, ``calibration``, ``samples``, ``seed``, ``batch_size``,
            ``dim_values``.
        int_ranges: ``[lo, hi)`` of index inputs (token ids), by name.
        target: the converted model's runner: a batch-2 sample is added only when its
            batch is dynamic too.

    Returns:
        One positional list of arrays per sample (the batch-2 sample, if any, last).
    """
    samples, batch = _samples(source, options, int_ranges, target)
    return samples + ([batch] if batch is not None else [])


def _samples(
    source: Runner, options: ConvertOptions, int_ranges: Mapping[str, tuple[int, int]] | None,
    target: Runner | None,
) -> tuple[list[list[np.ndarray]], list[np.ndarray] | None]:
    """The samples, and apart from them the batch-2 sample of a dynamic batch (or None)."""
    specs = source.input_specs()
    if options.inputs is not None:
        return load_inputs(options.inputs, specs), None
    cal = _calibration_file(options)
    if cal is not None:
        return split_samples(load_inputs(cal, specs), specs, MAX_CALIBRATION_SAMPLES), None
    count, first = max(1, int(options.samples)), _first_seed(options)
    samples = [generate_inputs(specs, seed=first + k, dim_values=options.dim_values,
                               batch_size=options.batch_size, int_ranges=int_ranges)
               for k in range(count)]
    batch = None
    if _batch_is_dynamic(specs, target) and options.batch_size == 1:
        batch = generate_inputs(specs, seed=first + count, dim_values=options.dim_values,
                                batch_size=2, int_ranges=int_ranges)
    return samples, batch


def _first_seed(options: ConvertOptions) -> int:
    """The first sample's seed: ``seed``, or ``seed + 1`` for int8 calibrated on random
    samples, whose first one is the ``seed`` stream itself (never verify on calibration)."""
    random_int8 = options.quantize == "int8" and str(options.calibration) == "random"
    return options.seed + (1 if random_int8 else 0)


def _batch_is_dynamic(specs: Sequence[TensorSpec], target: Runner | None) -> bool:
    def dynamic(ss: Sequence[TensorSpec]) -> bool:
        return bool(ss) and all(s.shape and not isinstance(s.shape[0], int) for s in ss)

    return dynamic(specs) and (target is None or dynamic(target.input_specs()))


def describe_inputs(options: ConvertOptions, samples: Sequence[Sequence[np.ndarray]]) -> str:
    """Where the samples came from, for the report (file, calibration data or seeds)."""
    n = len(samples)
    if options.inputs is not None:
        where = options.inputs if isinstance(options.inputs, (str, Path)) else "given arrays"
        return f"from {where} ({n} sample(s))"
    cal = _calibration_file(options)
    if cal is not None:
        return f"calibration data {cal} ({n} sample(s))"
    seeds, first = max(1, int(options.samples)), _first_seed(options)
    text = f"generated, seeds {first}..{first + seeds - 1}"
    if n > seeds:
        text += f" plus seed {first + seeds} with batch 2"
    return f"{text} ({n} sample(s))"


@dataclass
class InputMap:
    """How the source's inputs feed the converted model's: order and layout."""

    order: list[int]  # target input k takes source input order[k]
    perms: list[tuple[int, ...] | None]  # transpose applied to that feed, if any

    def feeds(self, source_feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The converted model's feeds for one source sample."""
        out = []
        for k, i in enumerate(self.order):
            feed = np.asarray(source_feeds[i])
            perm = self.perms[k]
            out.append(np.transpose(feed, perm) if perm is not None else feed)
        return out


def align_inputs(source_specs: Sequence[TensorSpec],
                 target_specs: Sequence[TensorSpec]) -> InputMap:
    """Match the converted model's inputs with the source's.

    Args:
        source_specs: the source's inputs.
        target_specs: the converted model's inputs.

    Returns:
        The order (by name when both sides have the same names, else by position) and a
        channels-last transpose where the converted model takes NHWC.

    Raises:
        SignatureMismatchError: the counts differ, or an input's rank or static shape
            does not fit.
    """
    if len(source_specs) != len(target_specs):
        raise SignatureMismatchError(
            f"the source has {len(source_specs)} input(s) "
            f"({', '.join(s.name for s in source_specs)}) but the converted model has "
            f"{len(target_specs)} ({', '.join(s.name for s in target_specs)})",
            hint="Verify a model against its own conversion")
    src_names = [s.name for s in source_specs]
    tgt_names = [s.name for s in target_specs]
    if sorted(src_names) == sorted(tgt_names) and len(set(src_names)) == len(src_names):
        order = [src_names.index(n) for n in tgt_names]
    else:
        order = list(range(len(target_specs)))
    perms = [_input_perm(source_specs[i], target_specs[k]) for k, i in enumerate(order)]
    return InputMap(order, perms)


def _input_perm(src: TensorSpec, tgt: TensorSpec) -> tuple[int, ...] | None:
    if not src.shape or not tgt.shape:
        return None  # a rank unknown on one side: nothing to check
    if len(src.shape) != len(tgt.shape):
        raise SignatureMismatchError(
            f"input '{src.name}' has shape {list(src.shape)} in the source but "
            f"'{tgt.name}' has {list(tgt.shape)} in the converted model")
    if _fits(src.shape, tgt.shape):
        return None
    perm = _CHANNELS_LAST.get(len(src.shape))
    if perm is not None and _fits(tuple(src.shape[p] for p in perm), tgt.shape):
        return perm
    raise SignatureMismatchError(
        f"input '{src.name}' has shape {list(src.shape)} in the source but '{tgt.name}' "
        f"has {list(tgt.shape)} in the converted model",
        hint="Verify a model against its own conversion, or set dims with --dim")


def _fits(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return all(not (isinstance(x, int) and isinstance(y, int)) or x == y
               for x, y in zip(a, b, strict=True))


def cast_for(feeds: Sequence[np.ndarray], specs: Sequence[TensorSpec]) -> list[np.ndarray]:
    """Each feed cast to the dtype ``specs`` declare, except float data for an 8/16-bit
    integer input (``int8_io``): that stays float, and the runner quantizes it with the
    file's own scale and zero point."""
    out = []
    for feed, spec in zip(feeds, specs, strict=False):
        arr = np.asarray(feed)
        try:
            dtype = np.dtype(spec.dtype)
        except TypeError:
            out.append(arr)
            continue
        quantized = arr.dtype.kind == "f" and dtype.kind in "iu" and dtype.itemsize <= 2
        out.append(arr if quantized else arr.astype(dtype, copy=False))
    return out


def verify_runners(
    source: Runner,
    target: Runner,
    options: ConvertOptions,
    *,
    int_ranges: Mapping[str, tuple[int, int]] | None = None,
    samples: Sequence[Sequence[np.ndarray]] | None = None,
    mode: str | None = None,
) -> VerificationReport:
    """Compare ``target`` against ``source`` output by output.

    Args:
        source: runs the original model.
        target: runs the converted file.
        options: sample and tolerance options (``rtol``/``atol`` override the mode's).
        int_ranges: ``[lo, hi)`` of index inputs (token ids), by name.
        samples: the samples (default: :func:`sample_inputs`).
        mode: the tolerance mode (default: the options' precision).

    Returns:
        The report (``passed`` when every output is within tolerance on every sample).

    Raises:
        SignatureMismatchError: the models' inputs or outputs do not correspond.
        ModelLoadError: the source fails to run; VerificationError: the converted model
            fails to run.
    """
    mode = mode or mode_for(options)
    tol = tolerance_for(mode, options.rtol, options.atol)
    source_specs, target_specs = source.input_specs(), target.input_specs()
    mapping = align_inputs(source_specs, target_specs)
    batch = None
    if samples is None:
        samples, batch = _samples(source, options, int_ranges, target)
    notes: list[str] = []
    source_feeds = [cast_for(f, source_specs) for f in samples]
    batch_ref: list[np.ndarray] | None = None
    refs: list[list[np.ndarray]] = []
    if batch is not None:
        try:  # with the others: a source in a worker process starts once
            *refs, batch_ref = _run_all(source, [*source_feeds, cast_for(batch, source_specs)],
                                        "source model", ModelLoadError)
        except RunnerUnavailableError:
            raise
        except ModelLoadError as exc:
            notes.append(f"the source fails with batch 2 although its batch is dynamic, so "
                         f"the dynamic batch was not verified ({exc.message})")
    if batch_ref is None:
        refs = _run_all(source, source_feeds, "source model", ModelLoadError)
    acts = _run_all(target, [cast_for(mapping.feeds(f), target_specs) for f in samples],
                    "converted model", VerificationError)
    if batch is not None and batch_ref is not None:
        try:
            act = _run(target, cast_for(mapping.feeds(batch), target_specs),
                       "converted model", VerificationError)
        except VerificationError as exc:
            if target.name == "litert":  # modelconv's TFLite exporter keeps dims dynamic
                raise VerificationError(  # only where they work: a file that fails is wrong
                    f"the converted model declares a dynamic batch but fails with batch 2 "
                    f"({exc.message})", hint="Report it; convert with a static batch "
                    "(dim_values / --dim) meanwhile") from exc
            # a defect of the file's dynamic batch, reported loudly; batch-1 evidence stands
            notes.append(f"WARNING: the converted model declares a dynamic batch but fails "
                         f"with batch 2 ({exc.message}); it was verified with batch 1 only")
        else:
            samples = [*samples, batch]
            refs.append(batch_ref)
            acts.append(act)
    report = compare_outputs(refs, acts, source.output_names(), target.output_names(), tol)
    report.notes.extend(notes)
    report.source_runtime, report.target_runtime, report.mode = source.name, target.name, mode
    report.inputs = describe_inputs(options, samples)
    report.input_shapes = [list(np.shape(f)) for f in samples[0]]
    return report


def verify_reference(
    target: Runner, options: ConvertOptions, reference: Any, mode: str | None = None,
) -> VerificationReport:
    """Compare ``target`` against outputs recorded elsewhere (``--reference``).

    Args:
        target: runs the converted file.
        options: ``inputs`` (required: the inputs the reference was recorded for) and
            tolerance options.
        reference: the expected outputs (see :func:`~.inputs.load_reference`).
        mode: the tolerance mode (default: the options' precision).

    Returns:
        The report; its source runtime names the reference.

    Raises:
        ShapeError: no ``inputs``, or the reference does not fit the model.
    """
    if options.inputs is None:
        raise ShapeError("verifying against --reference needs the inputs the outputs were "
                         "recorded for", hint="Pass them with --inputs FILE.npz")
    mode = mode or mode_for(options)
    tol = tolerance_for(mode, options.rtol, options.atol)
    specs, names = target.input_specs(), target.output_names()
    samples = load_inputs(options.inputs, specs)
    refs = load_reference(reference, names, len(samples))
    acts = [_run(target, cast_for(f, specs), "converted model", VerificationError)
            for f in samples]
    report = compare_outputs(refs, acts, names, names, tol)
    where = reference if isinstance(reference, (str, Path)) else "given arrays"
    report.source_runtime, report.target_runtime, report.mode = \
        f"reference {where}", target.name, mode
    report.inputs = describe_inputs(options, samples)
    report.input_shapes = [list(np.shape(f)) for f in samples[0]]
    return report


def compare_outputs(
    refs: Sequence[Sequence[np.ndarray]], acts: Sequence[Sequence[np.ndarray]],
    source_names: Sequence[str], target_names: Sequence[str], tol: Tolerance,
) -> VerificationReport:
    """The report for expected ``refs`` and converted ``acts`` (one list per sample).

    Outputs are matched by name when both sides have the same names, else by position;
    a channels-last output is transposed back. Samples of equal shapes are compared
    stacked, the rest group by group, and an output's metrics are the worst group's.

    Raises:
        SignatureMismatchError: the number of outputs, or an output's size, differs.
    """
    n_ref, n_act = len(refs[0]), len(acts[0])
    if n_ref != n_act:
        raise SignatureMismatchError(
            f"the source gives {n_ref} output(s) but the converted model {n_act}",
            hint="Verify a model against its own conversion")
    names = list(target_names)
    order = list(range(n_act))
    if len(source_names) == n_ref and sorted(source_names) == sorted(target_names) \
            and len(set(source_names)) == n_ref:
        order = [list(target_names).index(n) for n in source_names]
        names = list(source_names)
    report = VerificationReport(passed=False, tolerance=tol, samples=len(refs))
    for i in range(n_ref):
        name = names[i] if i < len(names) else f"output_{i}"
        pairs = [(np.asarray(r[i]), _unlayout(np.asarray(r[i]), np.asarray(a[order[i]]), name))
                 for r, a in zip(refs, acts, strict=True)]
        metrics = _grouped(name, pairs, tol)
        report.outputs.append(metrics)
        ref_i = pairs[0][0]
        if ref_i.dtype.kind == "f" and any(not np.all(np.isfinite(r)) for r, _ in pairs):
            report.notes.append(
                f"source output '{name}' contains NaN/Inf (check the inputs and weights)")
    report.passed = bool(report.outputs) and all(o.passed for o in report.outputs)
    return report


def _unlayout(ref: np.ndarray, act: np.ndarray, name: str) -> np.ndarray:
    if act.size != ref.size:
        raise SignatureMismatchError(
            f"output '{name}' has shape {list(act.shape)} in the converted model but "
            f"{list(ref.shape)} in the source", hint="Verify a model against its own conversion")
    perm = _CHANNELS_LAST.get(ref.ndim)
    if act.shape != ref.shape and perm is not None and act.ndim == ref.ndim and \
            act.shape == tuple(ref.shape[p] for p in perm):
        return np.transpose(act, np.argsort(perm))
    return act


def _grouped(name: str, pairs: list[tuple[np.ndarray, np.ndarray]],
             tol: Tolerance) -> OutputMetrics:
    groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[tuple[np.ndarray, np.ndarray]]]
    groups = {}
    for ref, act in pairs:
        groups.setdefault((ref.shape, act.shape), []).append((ref, act))
    parts = []
    for members in groups.values():
        ref = members[0][0] if len(members) == 1 else np.stack([m[0] for m in members])
        act = members[0][1] if len(members) == 1 else np.stack([m[1] for m in members])
        metrics = compare_arrays(name, ref, act, tol)
        metrics.shape = list(members[0][0].shape)  # one sample's shape, not the stack's
        parts.append(metrics)
    return merge_metrics(parts)


def _run_all(runner: Runner, samples: list[list[np.ndarray]], what: str,
             error: type[ModelconvError]) -> list[list[np.ndarray]]:
    """Outputs for every sample: in one call when the runner has ``run_many`` (a worker
    process then starts once), else sample by sample."""
    run_many = getattr(runner, "run_many", None)
    if run_many is None or len(samples) < 2:
        return [_run(runner, feeds, what, error) for feeds in samples]
    try:
        return [list(outs) for outs in run_many(samples)]
    except ModelconvError:
        raise
    except Exception as exc:
        raise error(f"the {what} fails to run in {runner.name}: {_first_line(exc)}",
                    hint="Check the inputs (--inputs) and dynamic dims (--dim)") from exc


def _run(runner: Runner, feeds: list[np.ndarray], what: str,
         error: type[ModelconvError]) -> list[np.ndarray]:
    """``runner.run(feeds)``, with a runtime's own exceptions turned into ``error``."""
    try:
        return runner.run(feeds)
    except ModelconvError:
        raise
    except Exception as exc:
        raise error(f"the {what} fails to run in {runner.name}: {_first_line(exc)}",
                    hint="Check the inputs (--inputs) and dynamic dims (--dim)") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
