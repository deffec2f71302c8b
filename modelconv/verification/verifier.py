"""Run a source and a converted model on the same inputs and build the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelconv.errors import ModelconvError, ModelLoadError, ShapeError, VerificationError
from modelconv.options import ConvertOptions
from modelconv.verification.compare import compare_arrays, tolerance_for
from modelconv.verification.inputs import cast_like, generate_inputs, load_inputs
from modelconv.verification.report import VerificationReport
from modelconv.verification.runners import Runner


def mode_for(options: ConvertOptions) -> str:
    """Tolerance mode implied by the conversion options."""
    if options.quantize in ("int8", "dynamic"):
        return options.quantize
    return "float16" if options.fp16 else "float32"


def sample_inputs(
    source: Runner, options: ConvertOptions, int_ranges: Mapping[str, tuple[int, int]] | None
) -> list[list[np.ndarray]]:
    """The verification samples: the user's, or one seeded sample from the signature."""
    specs = source.input_specs()
    if options.inputs is not None:
        return load_inputs(options.inputs, specs)
    return [generate_inputs(specs, seed=options.seed, dim_values=options.dim_values,
                            batch_size=options.batch_size, int_ranges=int_ranges)]


def verify_runners(
    source: Runner,
    target: Runner,
    options: ConvertOptions,
    *,
    int_ranges: Mapping[str, tuple[int, int]] | None = None,
    samples: Sequence[Sequence[np.ndarray]] | None = None,
    mode: str | None = None,
) -> VerificationReport:
    """Compare ``target`` against ``source`` output by output (matched by position).

    ``mode`` (a DEFAULT_TOLERANCES key, e.g. the precision read from the converted file)
    chooses the tolerance; by default the conversion options imply it (:func:`mode_for`).
    """
    mode = mode or mode_for(options)
    tol = tolerance_for(mode, options.rtol, options.atol)
    if samples is None:
        samples = sample_inputs(source, options, int_ranges)
    source_specs, target_specs = source.input_specs(), target.input_specs()
    if len(source_specs) != len(target_specs):
        raise ShapeError(
            f"the source has {len(source_specs)} inputs but the converted model has "
            f"{len(target_specs)}"
        )
    refs: list[list[np.ndarray]] = []
    acts: list[list[np.ndarray]] = []
    for feeds in samples:
        ref = _run(source, cast_like(feeds, source_specs), "source model", ModelLoadError)
        act = _run(target, cast_like(feeds, target_specs), "converted model", VerificationError)
        if len(ref) != len(act):
            raise VerificationError(
                f"the source gives {len(ref)} outputs but the converted model {len(act)}"
            )
        refs.append(ref)
        acts.append(act)
    names = target.output_names()
    report = VerificationReport(
        passed=True, source_runtime=source.name, target_runtime=target.name, tolerance=tol,
        mode=mode, samples=len(samples), input_shapes=[list(np.shape(f)) for f in samples[0]],
    )
    for i in range(len(refs[0])):
        ref_i = _stack([r[i] for r in refs])
        act_i = _stack([a[i] for a in acts])
        metrics = compare_arrays(names[i] if i < len(names) else f"output_{i}", ref_i, act_i, tol)
        report.outputs.append(metrics)
        if not np.all(np.isfinite(ref_i)) if ref_i.dtype.kind == "f" else False:
            report.notes.append(
                f"source output '{metrics.name}' contains NaN/Inf (check the weights)"
            )
    report.passed = all(o.passed for o in report.outputs)
    return report


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


def _stack(arrays: list[Any]) -> np.ndarray:
    arrays = [np.asarray(a) for a in arrays]
    if len(arrays) == 1:
        return arrays[0]
    try:
        return np.stack(arrays)
    except ValueError:  # dynamic output shapes: compare flattened
        return np.concatenate([a.ravel() for a in arrays])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
