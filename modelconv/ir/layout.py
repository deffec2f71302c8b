"""Channels-first/last layout helpers shared by the importers whose sources are channels-last
(Keras, TensorFlow graphs).

A tensor's IR value holds either the source's (logical, channels-last) order, ``LAST``, or the
channels-first order, ``FIRST`` (``(N, C, d1..dk)``; rank >= 3 only). Framework-free.
"""

from __future__ import annotations

FIRST = "first"
LAST = "last"


def perm_to_first(rank: int) -> list[int]:
    """Permutation taking a channels-last tensor to channels-first."""
    return [0, rank - 1, *range(1, rank - 1)]


def perm_to_last(rank: int) -> list[int]:
    """Permutation taking a channels-first tensor to channels-last."""
    return [0, *range(2, rank), 1]


def ir_axis(axis: int, rank: int, layout: str) -> int:
    """The IR axis holding source axis ``axis`` of a tensor held in ``layout``.

    Args:
        axis: the axis in the source (channels-last) order; negative counts from the end.
        rank: the tensor's rank.
        layout: ``FIRST`` or ``LAST``, the order the IR value holds.

    Returns:
        The axis of the IR value, in ``0..rank-1``.

    Raises:
        ValueError: ``axis`` is out of range for ``rank``.
    """
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    if layout == LAST or rank <= 2:
        return a
    if a == 0:
        return 0
    return 1 if a == rank - 1 else a + 1


def same_pads(kernel: tuple[int, ...], dilation: tuple[int, ...]) -> list[int]:
    """TF 'same' padding for stride 1 (extra padding at the end), ONNX pads order."""
    total = [(k - 1) * d for k, d in zip(kernel, dilation, strict=True)]
    return [t // 2 for t in total] + [t - t // 2 for t in total]
