"""Per-output comparison metrics and the tolerance policy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Pass rule: ``max_abs <= atol + rtol * max|reference|`` and cosine >= min_cosine."""

    rtol: float
    atol: float
    min_cosine: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready form."""
        return asdict(self)


def describe_tolerance(mode: str, tol: Tolerance) -> str:
    """``float32: rtol 0.0001, atol 1e-05`` (plus the minimum cosine when there is one)."""
    text = f"{mode}: rtol {tol.rtol:g}, atol {tol.atol:g}"
    return text + (f", cosine >= {tol.min_cosine:g}" if tol.min_cosine is not None else "")


#: defaults by the kind of the converted model (its precision)
DEFAULT_TOLERANCES = {
    "float32": Tolerance(rtol=1e-4, atol=1e-5),
    "float64": Tolerance(rtol=1e-7, atol=1e-9),
    "float16": Tolerance(rtol=1e-2, atol=1e-3, min_cosine=0.999),
    "bfloat16": Tolerance(rtol=5e-2, atol=1e-2, min_cosine=0.99),
    "dynamic": Tolerance(rtol=5e-2, atol=1e-2, min_cosine=0.99),
    "int8": Tolerance(rtol=1.0, atol=1.0, min_cosine=0.98),
    "exact": Tolerance(rtol=0.0, atol=0.0),
}


def tolerance_for(mode: str, rtol: float | None = None, atol: float | None = None) -> Tolerance:
    """The default tolerance for ``mode`` with caller overrides applied."""
    base = DEFAULT_TOLERANCES.get(mode, DEFAULT_TOLERANCES["float32"])
    return Tolerance(
        rtol=base.rtol if rtol is None else rtol,
        atol=base.atol if atol is None else atol,
        min_cosine=base.min_cosine,
    )


@dataclass
class OutputMetrics:
    """How far one converted output is from the source's."""

    name: str
    shape: list[int]
    dtype: str
    max_abs: float
    max_rel: float  # max_abs / max|reference|
    mean_abs: float
    cosine: float
    top1_agreement: float | None
    nan_mismatch: int  # positions where exactly one side is NaN
    inf_mismatch: int  # positions where the infinities differ
    passed: bool
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (NaN becomes null)."""
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in asdict(self).items()}


def compare_arrays(
    name: str, reference: np.ndarray, actual: np.ndarray, tol: Tolerance
) -> OutputMetrics:
    """Compare ``actual`` against ``reference`` (NaN/Inf-aware).

    Error metrics are taken over the positions finite on both sides. An output without
    any finite value, or whose finite positions differ between the two sides, never
    passes: its metrics are NaN (there is no evidence to measure), not 0 / 1.0.
    """
    ref = np.asarray(reference)
    act = np.asarray(actual)
    if ref.shape != act.shape:
        if ref.size == act.size:
            act = act.reshape(ref.shape)
        else:
            return OutputMetrics(name, list(ref.shape), str(ref.dtype), float("inf"),
                                 float("inf"), float("inf"), 0.0, None, 0, 0, False,
                                 f"shape {list(act.shape)} != expected {list(ref.shape)}")
    if ref.dtype.kind not in "fc" or act.dtype.kind not in "fc":
        equal = np.array_equal(ref, act)
        diff = np.abs(ref.astype(np.float64) - act.astype(np.float64)) if ref.size else np.zeros(1)
        return OutputMetrics(name, list(ref.shape), str(ref.dtype), float(diff.max()),
                             0.0 if equal else 1.0, float(diff.mean()), 1.0 if equal else 0.0,
                             None, 0, 0, equal, "" if equal else "exact values differ")
    r = ref.astype(np.float64)
    a = act.astype(np.float64)
    r_nan, a_nan = np.isnan(r), np.isnan(a)
    nan_mismatch = int(np.count_nonzero(r_nan != a_nan))
    r_inf, a_inf = np.isinf(r), np.isinf(a)
    inf_mismatch = int(np.count_nonzero((r_inf | a_inf) & (r != a)))
    r_fin, a_fin = np.isfinite(r), np.isfinite(a)
    finite = r_fin & a_fin
    position_mismatch = int(np.count_nonzero(r_fin != a_fin))
    nan = float("nan")
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(r - a)[finite]
    max_abs = float(diff.max()) if diff.size else nan
    scale = float(np.abs(r[finite]).max()) if diff.size else nan
    if not diff.size:
        max_rel = nan
    else:
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    mean_abs = float(diff.mean()) if diff.size else nan
    rf, af = r[finite].ravel(), a[finite].ravel()
    denom = float(np.linalg.norm(rf) * np.linalg.norm(af))
    if not diff.size:
        cosine = nan
    else:
        cosine = float(rf @ af / denom) if denom > 0 else (1.0 if max_abs == 0 else 0.0)
    top1 = None
    if r.ndim >= 2 and r.shape[-1] > 1 and not (r_nan.any() or a_nan.any()):
        top1 = float(np.mean(np.argmax(r, axis=-1) == np.argmax(a, axis=-1)))
    reasons = []
    if r.size and not r_fin.any():
        reasons.append("the source output has no finite value (all NaN/Inf): nothing to "
                       "compare; check the inputs (masks, ids) and the weights")
    elif r.size and not a_fin.any():
        reasons.append("the converted output has no finite value (all NaN/Inf)")
    elif position_mismatch:
        reasons.append(f"finite positions differ at {position_mismatch} position(s)")
    if nan_mismatch:
        reasons.append(f"{nan_mismatch} NaN position(s) differ")
    if inf_mismatch:
        reasons.append(f"{inf_mismatch} Inf position(s) differ")
    if diff.size and max_abs > tol.atol + tol.rtol * scale:
        reasons.append(f"max abs error {max_abs:.3g} > {tol.atol:.3g} + {tol.rtol:.3g}*{scale:.3g}")
    if diff.size and tol.min_cosine is not None and cosine < tol.min_cosine:
        reasons.append(f"cosine {cosine:.5f} < {tol.min_cosine}")
    return OutputMetrics(name, list(ref.shape), str(ref.dtype), max_abs, max_rel, mean_abs,
                         cosine, top1, nan_mismatch, inf_mismatch, not reasons, "; ".join(reasons))


def merge_metrics(parts: Sequence[OutputMetrics]) -> OutputMetrics:
    """One output's metrics over several groups of samples (e.g. batch 1 and batch 2): the
    worst of each error, the lowest cosine and top-1; it passes when every group passes."""
    if len(parts) == 1:
        return parts[0]

    def worst(values: list[float], pick: Callable[[list[float]], float]) -> float:
        if any(not np.isfinite(v) and not np.isinf(v) for v in values):
            return float("nan")  # a group without evidence taints the whole output
        return pick(values)

    tops = [p.top1_agreement for p in parts if p.top1_agreement is not None]
    reasons = list(dict.fromkeys(p.reason for p in parts if p.reason))
    first = parts[0]
    return OutputMetrics(
        first.name, first.shape, first.dtype,
        worst([p.max_abs for p in parts], max), worst([p.max_rel for p in parts], max),
        worst([p.mean_abs for p in parts], max), worst([p.cosine for p in parts], min),
        min(tops) if tops else None, sum(p.nan_mismatch for p in parts),
        sum(p.inf_mismatch for p in parts), all(p.passed for p in parts), "; ".join(reasons))
