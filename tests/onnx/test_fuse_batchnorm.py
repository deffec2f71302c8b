"""BatchNormalization folded into Conv / ConvTranspose weights: the folded weights keep
their dtype and equal the float64 fold to within two roundings of that dtype (the scale's
and the product's)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelconv.passes.fuse_batchnorm import FuseBatchNormPass

_RNG = np.random.default_rng(0)


def _model(op: str, weight: np.ndarray, group: int) -> tuple[ir.Model, list[np.ndarray]]:
    out_ch = weight.shape[0] if op == "Conv" else weight.shape[1] * group
    params = [_RNG.uniform(0.5, 2, out_ch), _RNG.normal(size=out_ch),
              _RNG.normal(size=out_ch), _RNG.uniform(0.5, 1.5, out_ch)]
    names = ["gamma", "beta", "mean", "var"]
    elem = TensorProto.FLOAT16 if weight.dtype == np.float16 else TensorProto.FLOAT
    in_ch = weight.shape[1] * group if op == "Conv" else weight.shape[0]
    x = helper.make_tensor_value_info("x", elem, [1, in_ch, 4, 4])
    y = helper.make_tensor_value_info("y", elem, None)
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(
        np.zeros(out_ch, weight.dtype), "b")]
    inits += [numpy_helper.from_array(p.astype(weight.dtype), n) for p, n in zip(params, names,
                                                                               strict=True)]
    nodes = [helper.make_node(op, ["x", "w", "b"], ["c"], group=group),
             helper.make_node("BatchNormalization", ["c", *names], ["y"], epsilon=1e-5)]
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return ir.from_proto(model), [p.astype(weight.dtype).astype(np.float64) for p in params]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(("op", "shape", "group"), [
    ("Conv", (8, 3, 3, 3), 1), ("Conv", (8, 2, 3, 3), 4), ("ConvTranspose", (8, 3, 2, 2), 2)])
def test_folded_weights_keep_their_dtype_and_value(op: str, shape: tuple[int, ...],
                                                   group: int, dtype: type) -> None:
    weight = _RNG.normal(size=shape).astype(dtype)
    model, (gamma, _, _, var) = _model(op, weight, group)
    assert FuseBatchNormPass()(model).modified
    (conv,) = list(model.graph)
    assert conv.op_type == op
    folded = conv.inputs[1].const_value.numpy()
    assert folded.dtype == dtype and folded.shape == weight.shape
    scale = gamma / np.sqrt(var + 1e-5)
    if op == "Conv":
        expected = weight.astype(np.float64) * scale.reshape(-1, 1, 1, 1)
    else:
        w_g = weight.astype(np.float64).reshape(group, -1, shape[1], *shape[2:])
        expected = (w_g * scale.reshape(group, 1, shape[1], 1, 1)).reshape(shape)
    ulp = np.spacing(np.abs(expected).astype(dtype)).astype(np.float64)
    assert np.all(np.abs(folded.astype(np.float64) - expected) <= 2 * ulp), \
        np.max(np.abs(folded - expected) / ulp)
