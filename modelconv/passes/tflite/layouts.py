"""Layout algebra for the NHWC pass: where a permuted tensor's layout goes through a Reshape
or a MatMul without moving data (pure Python).

A *layout* ``P`` of a value says the tensor stored at run time is ``logical.transpose(P)``.
"""

from __future__ import annotations

from collections.abc import Sequence

Perm = tuple[int, ...]


def reshape_layout(in_shape: Sequence[int], out_shape: Sequence[int], p: Perm) -> Perm | None:
    """Layout of a Reshape's output when its input is stored in layout ``p``, or None.

    The logical reshape is split into groups of input dims that become groups of output
    dims (merged or split, size-1 dims aside). When ``p`` keeps every group's dims together
    and in order, reshaping the *stored* tensor moves no data: the output is stored with its
    groups in the same order (``[N,C,H,W]`` stored NHWC, reshaped to ``[N,C,H*W]``, is
    ``[N,H*W,C]`` stored: layout ``(0, 2, 1)``). None when a group is torn apart.

    Args:
        in_shape: the logical input shape.
        out_shape: the logical output shape.
        p: the input's layout.

    Returns:
        The output layout (identity when nothing moves), or None.
    """
    if 0 in in_shape or 0 in out_shape:
        return None
    groups = _reshape_groups([a for a, d in enumerate(in_shape) if d != 1],
                             [a for a, d in enumerate(out_shape) if d != 1], in_shape, out_shape)
    if groups is None:
        return None
    group_of = {a: k for k, (ins, _) in enumerate(groups) for a in ins}
    stored = [a for a in p if in_shape[a] != 1]
    order: list[int] = []
    pos = 0
    while pos < len(stored):
        k = group_of[stored[pos]]
        ins = groups[k][0]
        if k in order or stored[pos:pos + len(ins)] != ins:
            return None
        order.append(k)
        pos += len(ins)
    q = [a for k in order for a in groups[k][1]]
    for u in (a for a, d in enumerate(out_shape) if d == 1):
        q.insert(next((i for i, a in enumerate(q) if a > u), len(q)), u)
    return tuple(q)


def _reshape_groups(ins: list[int], outs: list[int], in_shape: Sequence[int],
                    out_shape: Sequence[int]) -> list[tuple[list[int], list[int]]] | None:
    """The smallest runs of input / output dims (no size-1 dims) with equal products."""
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(ins) or j < len(outs):
        if i >= len(ins) or j >= len(outs):
            return None
        gi, gj = [ins[i]], [outs[j]]
        pi, pj = in_shape[ins[i]], out_shape[outs[j]]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj:
                if i >= len(ins):
                    return None
                gi.append(ins[i])
                pi, i = pi * in_shape[ins[i]], i + 1
            else:
                if j >= len(outs):
                    return None
                gj.append(outs[j])
                pj, j = pj * out_shape[outs[j]], j + 1
        groups.append((gi, gj))
    return groups


def batch_order(p: Perm) -> Perm | None:
    """The order of the batch dims when ``p`` keeps the two matrix dims last (maybe swapped).

    Args:
        p: the layout of a MatMul operand.

    Returns:
        ``p`` without its last two entries, or None when a matrix dim is stored elsewhere.
    """
    r = len(p)
    if r < 2 or set(p[-2:]) != {r - 2, r - 1}:
        return None
    return tuple(p[:-2])

