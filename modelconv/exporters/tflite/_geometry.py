"""Window geometry shared by conv and pool lowerings: ONNX pads -> TFLite SAME/VALID/PAD."""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx_ir as ir

from modelconv.errors import ExportError


@dataclass
class Window:
    """A 2-D sliding window in TFLite terms (rank-3 inputs use H = 1)."""

    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    pads: list[int]  # top, left, bottom, right
    out: list[int]


def _attr(node: ir.Node, name: str, default: object) -> object:
    a = node.attributes.get(name)
    return default if a is None else a.value


def window(node: ir.Node, in_hw: list[int], kernel: list[int], out_hw: list[int]) -> Window:
    """Window of a Conv/Pool node with input spatial size ``in_hw`` (1-D ops get H = 1)."""
    k = len(kernel)
    strides = list(_attr(node, "strides", [1] * k))  # type: ignore[call-overload]
    dil = list(_attr(node, "dilations", [1] * k))  # type: ignore[call-overload]
    pads = list(_attr(node, "pads", [0] * (2 * k)))  # type: ignore[call-overload]
    auto = _attr(node, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * k)
        for i in range(k):
            eff = (kernel[i] - 1) * dil[i] + 1
            total = max((math.ceil(in_hw[-k + i] / strides[i]) - 1) * strides[i] + eff
                        - in_hw[-k + i], 0)
            small = total // 2
            pads[i], pads[i + k] = (small, total - small) if auto == "SAME_UPPER" else (
                total - small, small)
    elif auto == "VALID":
        pads = [0] * (2 * k)
    if k == 1:
        return Window([1, *kernel], [1, *strides], [1, *dil], [0, pads[0], 0, pads[1]],
                      [1, *out_hw])
    if k != 2:
        raise ExportError(f"{node.op_type} with {k} spatial dims is not supported for TFLite")
    return Window(list(kernel), strides, dil, [pads[0], pads[1], pads[2], pads[3]], list(out_hw))


def choose_padding(w: Window, in_hw: list[int]) -> str:
    """'VALID', 'SAME' or 'EXPLICIT' (needs a PAD op) for window ``w``."""
    eff = [(w.kernel[i] - 1) * w.dilations[i] + 1 for i in range(2)]
    valid = [math.ceil((in_hw[i] - eff[i] + 1) / w.strides[i]) for i in range(2)]
    if not any(w.pads) and valid == w.out:
        return "VALID"
    same_out = [math.ceil(in_hw[i] / w.strides[i]) for i in range(2)]
    if same_out == w.out:
        totals = [max((same_out[i] - 1) * w.strides[i] + eff[i] - in_hw[i], 0) for i in range(2)]
        if w.pads[0] == totals[0] // 2 and w.pads[1] == totals[1] // 2:
            return "SAME"
    return "EXPLICIT"


def explicit_end_pads(w: Window, in_hw: list[int]) -> list[int]:
    """Bottom/right pads that make a VALID window produce exactly ``w.out``."""
    ends = []
    for i in range(2):
        eff = (w.kernel[i] - 1) * w.dilations[i] + 1
        need = (w.out[i] - 1) * w.strides[i] + eff - in_hw[i] - w.pads[i]
        ends.append(max(need, 0))
    return ends
