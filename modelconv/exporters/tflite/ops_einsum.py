"""Einsum -> SUM / TRANSPOSE / RESHAPE / BATCH_MATMUL.

Operands are contracted left to right. Per pair, letters are batch (in both and kept),
contracted (in both, not kept later), or free (in one only); each operand is transposed to
(batch, free, contracted), reshaped to rank 3 and multiplied with BATCH_MATMUL. Letters seen
in one operand only and never kept are summed first. Diagonals (a letter repeated within one
operand) and broadcasting of size-1 letters are refused.
"""

from __future__ import annotations

import string

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import value_dtype
from modelconv.exporters.tflite.registry import attr, tflite_lowering

# Letters standing for the dims an ellipsis covers (not valid einsum subscripts).
_ELLIPSIS_LETTERS = "0123456789"


def parse_equation(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Input terms and output term of an einsum equation, ellipses expanded.

    Args:
        equation: the ``equation`` attribute (explicit ``->`` or implicit output).
        ranks: rank of every operand.

    Returns:
        (terms, output): one letter string per operand, and the output letters.

    Raises:
        ExportError: malformed equation, a diagonal (repeated letter in one term) or an
            ellipsis covering more than 10 dims.
    """
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ExportError(f"Einsum '{equation}': {len(terms)} terms for {len(ranks)} inputs")
    width = 0
    for term, rank in zip(terms, ranks, strict=True):
        if "..." in term:
            width = max(width, rank - (len(term) - 3))
    if width > len(_ELLIPSIS_LETTERS):
        raise ExportError(f"Einsum '{equation}': ellipsis over {width} dims")
    ell = _ELLIPSIS_LETTERS[len(_ELLIPSIS_LETTERS) - width:] if width else ""
    expanded = []
    for original, rank in zip(terms, ranks, strict=True):
        term = original
        if "..." in term:
            n = rank - (len(term) - 3)
            term = term.replace("...", ell[len(ell) - n:] if n else "")
        if len(term) != rank or any(c not in string.ascii_letters + ell for c in term):
            raise ExportError(f"Einsum '{equation}': term '{term}' for a rank-{rank} input")
        if len(set(term)) != len(term):
            raise ExportError(f"Einsum '{equation}': diagonal (a repeated letter in '{original}')")
        expanded.append(term)
    if arrow:
        out = out.replace("...", ell)
    else:
        letters = "".join(expanded)
        out = ell + "".join(sorted(c for c in set(letters) if c in string.ascii_letters
                                   and letters.count(c) == 1))
    if len(set(out)) != len(out) or any(c not in "".join(expanded) for c in out):
        raise ExportError(f"Einsum '{equation}': output '{out}'")
    return expanded, out


def _sizes(terms: list[str], shapes: list[list[int]], equation: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes, strict=True):
        for c, d in zip(term, shape, strict=True):
            if sizes.setdefault(c, d) != d:
                raise ExportError(f"Einsum '{equation}': letter '{c}' is {sizes[c]} and {d} "
                                  "(broadcasting is not supported)")
    return sizes


def check_einsum(node: ir.Node) -> str | None:
    """Einsum: float32 (BATCH_MATMUL), static shapes, no diagonal, no broadcast letters."""
    for v in node.inputs:
        name = value_dtype(v)
        if name not in (None, "float32"):
            return f"{name} inputs (float32 only)"
    shapes: list[list[int]] = []
    for v in node.inputs:
        if v is None or v.shape is None:
            return None  # reported by the static-shape check
        dims = [d for d in v.shape if isinstance(d, int)]
        if len(dims) != len(v.shape):
            return None
        shapes.append(dims)
    equation = str(attr(node, "equation", ""))
    try:
        terms, _ = parse_equation(equation, [len(sh) for sh in shapes])
        _sizes(terms, shapes, equation)
    except ExportError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def _arrange(ctx: LoweringContext, t: int, term: str, order: str) -> int:
    """TRANSPOSE ``t`` (letters ``term``) to ``order`` (skipped when already in order)."""
    if term == order:
        return t
    return ctx.transpose(t, [term.index(c) for c in order], "einsum_perm")


def _sum_out(ctx: LoweringContext, t: int, term: str, drop: str) -> tuple[int, str]:
    """SUM ``t`` over the letters in ``drop`` (keepdims 0)."""
    axes = [i for i, c in enumerate(term) if c in drop]
    if not axes:
        return t, term
    kept = "".join(c for c in term if c not in drop)
    shape = [d for i, d in enumerate(ctx.t(t).shape) if i not in axes]
    dst = ctx.like(t, "einsum_sum", shape)
    opts = s.ReducerOptionsT()
    opts.keepDims = False
    ctx.emit("SUM", [t, ctx.i32(axes, "einsum_axes")], [dst], opts)
    return dst, kept


def _pair(ctx: LoweringContext, a: int, ta: str, b: int, tb: str, keep: str,
          sizes: dict[str, int]) -> tuple[int, str]:
    """Contract two operands, keeping the letters in ``keep``; returns (tensor, letters)."""
    batch = "".join(c for c in ta if c in tb and c in keep)
    contract = "".join(c for c in ta if c in tb and c not in keep)
    free_a = "".join(c for c in ta if c not in tb)
    free_b = "".join(c for c in tb if c not in ta)

    def prod(letters: str) -> int:
        return int(np.prod([sizes[c] for c in letters], dtype=np.int64))

    a3 = _arrange(ctx, a, ta, batch + free_a + contract)
    b3 = _arrange(ctx, b, tb, batch + contract + free_b)
    a3 = ctx.reshape(a3, [prod(batch), prod(free_a), prod(contract)], "einsum_lhs")
    b3 = ctx.reshape(b3, [prod(batch), prod(contract), prod(free_b)], "einsum_rhs")
    mm = ctx.like(a3, "einsum_matmul", [prod(batch), prod(free_a), prod(free_b)])
    opts = s.BatchMatMulOptionsT()
    opts.adjX = opts.adjY = False
    ctx.emit("BATCH_MATMUL", [a3, b3], [mm], opts)
    letters = batch + free_a + free_b
    return ctx.reshape(mm, [sizes[c] for c in letters], "einsum_product"), letters


@tflite_lowering("Einsum", check=check_einsum)
def lower_einsum(ctx: LoweringContext, node: ir.Node) -> None:
    """Einsum -> per-operand SUM, pairwise TRANSPOSE + RESHAPE + BATCH_MATMUL, final
    TRANSPOSE (and RESHAPE into the output tensor)."""
    ins = [ctx.inp(node, i) for i in range(len(node.inputs))]
    shapes = [ctx.t(t).shape for t in ins]
    equation = str(attr(node, "equation", ""))
    terms, out = parse_equation(equation, [len(sh) for sh in shapes])
    sizes = _sizes(terms, shapes, equation)
    later = [out + "".join(terms[k + 1:]) for k in range(len(terms))]
    others = ["".join(t for j, t in enumerate(terms) if j != k) for k in range(len(terms))]
    acc, acc_term = _sum_out(ctx, ins[0], terms[0],
                             "".join(c for c in terms[0] if c not in out + others[0]))
    for k in range(1, len(terms)):
        t, term = _sum_out(ctx, ins[k], terms[k], "".join(
            c for c in terms[k] if c not in out + others[k]))
        # letters of the pair needed by the output or a later operand
        keep = "".join(c for c in acc_term + term if c in later[k])
        acc, acc_term = _pair(ctx, acc, acc_term, t, term, keep, sizes)
    acc, acc_term = _sum_out(ctx, acc, acc_term, "".join(c for c in acc_term if c not in out))
    acc = _arrange(ctx, acc, acc_term, out)
    dst = ctx.out(node)
    ctx.reshape(acc, ctx.t(dst).shape, dst=dst)
