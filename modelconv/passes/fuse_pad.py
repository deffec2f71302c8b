"""Fold a zero constant Pad on spatial dims into the following Conv's pads.

Before::  x -> Pad(mode=constant, value=0, pads on H/W) -> Conv(pads=p) -> y
After::   x -> Conv(pads=p + pad) -> y
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import attr, const_array, single_consumer


class FusePadPass(ir.passes.InPlacePass):
    """Merge zero padding into convolutions."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fuse every eligible Pad -> Conv pair."""
        graph = model.graph
        changed = False
        for pad in list(graph):
            if pad.op_type != "Pad" or pad.domain != "":
                continue
            if attr(pad, "mode", "constant") != "constant":
                continue
            conv = single_consumer(pad.outputs[0])
            if conv is None or conv.op_type != "Conv" or conv.domain != "":
                continue
            if conv.inputs[0] is not pad.outputs[0] or attr(conv, "auto_pad", "NOTSET") != "NOTSET":
                continue
            pads = const_array(pad.inputs[1])
            value = const_array(pad.inputs[2]) if len(pad.inputs) > 2 else None
            if pads is None or (len(pad.inputs) > 3 and pad.inputs[3] is not None):
                continue
            if value is not None and np.any(value != 0):
                continue
            r = pads.size // 2
            begin, end = pads[:r], pads[r:]
            if np.any(pads < 0) or begin[:2].any() or end[:2].any():
                continue
            conv_pads = np.asarray(attr(conv, "pads", [0] * (2 * (r - 2))), np.int64)
            k = r - 2
            new = np.concatenate([conv_pads[:k] + begin[2:], conv_pads[k:] + end[2:]])
            conv.attributes["pads"] = ir.AttrInt64s("pads", [int(v) for v in new])
            conv.replace_input_with(0, pad.inputs[0])
            graph.remove(pad, safe=True)
            changed = True
        return ir.passes.PassResult(model, modified=changed)
