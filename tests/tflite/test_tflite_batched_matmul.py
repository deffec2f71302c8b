"""Attention as other graphs than torch.export's spell it costs the TFLite layout pass no
more TRANSPOSE / RESHAPE ops: a MatMul whose batch dims were flattened (torch's ``bmm`` /
``mm`` / ``addmm`` decomposition of ``matmul`` and ``linear``: a decomposed ``.pt2``, an ONNX
file made from one, the fast capture before it recorded matmul whole), and q, k and v cut
from the head-split tensor one by one (``qkv[0]``: Gather, or ``select``: Slice + Squeeze)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelconv
from modelconv.passes.tflite.batched_matmul import UnflattenBatchMatMulPass
from tests.tflite_helpers import inner_transposes

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                reason="needs ai_edge_litert")


class _Graph:
    """A tiny ONNX graph builder: ``add(op, inputs, **attrs)`` returns the output name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(0)

    def const(self, arr: np.ndarray) -> str:
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def add(self, op: str, inputs: list[str], outputs: int = 1, **attrs: object) -> str:
        names = [f"t{len(self.nodes)}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, **attrs))
        return names[0]

    def flat_matmul(self, a: str, b: str, a_shape: list[int], b_shape: list[int]) -> str:
        """torch's matmul decomposition of ``a @ b`` (4-D operands): expand, flatten, bmm,
        unflatten."""
        batch = a_shape[:-2]
        p = int(np.prod(batch))
        ea = self.add("Expand", [a, self.const(np.asarray(a_shape, np.int64))])
        eb = self.add("Expand", [b, self.const(np.asarray(b_shape, np.int64))])
        ra = self.add("Reshape", [ea, self.const(np.asarray([p, *a_shape[-2:]], np.int64))])
        rb = self.add("Reshape", [eb, self.const(np.asarray([p, *b_shape[-2:]], np.int64))])
        mm = self.add("MatMul", [ra, rb])
        out = [*batch, a_shape[-2], b_shape[-1]]
        return self.add("Reshape", [mm, self.const(np.asarray(out, np.int64))])

    def linear(self, x: str, k: int, m: int) -> str:
        w = self.const(self.rng.standard_normal((k, m)).astype(np.float32) * 0.3)
        b = self.const(self.rng.standard_normal(m).astype(np.float32) * 0.1)
        return self.add("Add", [self.add("MatMul", [x, w]), b])

    def save(self, x_shape: list[int], y: str, path: Path) -> Path:
        graph = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
        onnx.save(onnx.shape_inference.infer_shapes(model), path)
        return path


def _split_then_permute(batch: int, path: Path, heads: int = 2, n: int = 10, kd: int = 4,
                        d: int = 8, dim: int = 24) -> Path:
    """LeViT's attention as the fast capture records it: q, k, v split from
    ``[B, N, H, 2*kd + d]``, permuted one by one, and both products in ``bmm`` form."""
    g = _Graph()
    qkv = g.add("Reshape", [g.linear("x", dim, heads * (2 * kd + d)),
                            g.const(np.asarray([batch, n, heads, 2 * kd + d], np.int64))])
    q, k, v = (f"t{len(g.nodes)}_{i}" for i in range(3))
    g.add("Split", [qkv, g.const(np.asarray([kd, kd, d], np.int64))], outputs=3, axis=3)
    q = g.add("Transpose", [q], perm=[0, 2, 1, 3])
    k = g.add("Transpose", [k], perm=[0, 2, 3, 1])
    v = g.add("Transpose", [v], perm=[0, 2, 1, 3])
    s = g.flat_matmul(q, k, [batch, heads, n, kd], [batch, heads, kd, n])
    s = g.add("Softmax", [g.add("Mul", [s, g.const(np.asarray(kd ** -0.5, np.float32))])],
              axis=-1)
    o = g.flat_matmul(s, v, [batch, heads, n, n], [batch, heads, n, d])
    o = g.add("Reshape", [g.add("Transpose", [o], perm=[0, 2, 1, 3]),
                          g.const(np.asarray([batch, n, heads * d], np.int64))])
    return g.save([batch, n, dim], g.linear(o, heads * d, dim), path)


def _indexed_qkv(cut: str, path: Path, batch: int = 2, heads: int = 2, n: int = 10,
                 d: int = 8) -> Path:
    """timm ViT's attention as ``q, k, v = qkv[0], qkv[1], qkv[2]`` of the head-major
    ``[3, B, H, N, D]`` tensor: Gathers of a scalar index (torch.onnx) or, decomposed to
    ``select``, Slice + Squeeze."""
    g = _Graph()
    dim = heads * d
    qkv = g.add("Reshape", [g.linear("x", dim, 3 * dim),
                            g.const(np.asarray([batch, n, 3, heads, d], np.int64))])
    qkv = g.add("Transpose", [qkv], perm=[2, 0, 3, 1, 4])
    zero = g.const(np.asarray([0], np.int64))
    pieces = []
    for i in range(3):
        if cut == "gather":
            pieces.append(g.add("Gather", [qkv, g.const(np.asarray(i, np.int64))], axis=0))
        else:
            bounds = [g.const(np.asarray([j], np.int64)) for j in (i, i + 1)]
            pieces.append(g.add("Squeeze", [g.add("Slice", [qkv, *bounds, zero]), zero]))
    q, k, v = pieces
    s = g.add("MatMul", [q, g.add("Transpose", [k], perm=[0, 1, 3, 2])])
    s = g.add("Softmax", [g.add("Mul", [s, g.const(np.asarray(d ** -0.5, np.float32))])],
              axis=-1)
    o = g.add("Reshape", [g.add("Transpose", [g.add("MatMul", [s, v])], perm=[0, 2, 1, 3]),
                          g.const(np.asarray([batch, n, dim], np.int64))])
    return g.save([batch, n, dim], g.linear(o, dim, dim), path)


def _convert(src: Path, out: Path) -> None:
    result = modelconv.convert(src, out, rtol=1e-4, atol=1e-5)
    assert result.verified
    assert result.report is not None and result.report.outputs[0].max_rel < 1e-4


@pytest.mark.parametrize("batch", [1, 2])
def test_flattened_attention_shares_one_transpose(tmp_path: Path, batch: int) -> None:
    out = tmp_path / "attention.tflite"
    _convert(_split_then_permute(batch, tmp_path / "attention.onnx"), out)
    from modelconv.exporters.tflite.inspect import inspect_tflite

    counts = inspect_tflite(out).op_counts
    assert inner_transposes(out) <= 2, counts  # one head split for q, k and v; one merge
    assert "BROADCAST_TO" not in counts and counts.get("RESHAPE", 0) <= 2, counts


@pytest.mark.parametrize("cut", ["gather", "slice"])
def test_indexed_qkv_shares_one_transpose(tmp_path: Path, cut: str) -> None:
    out = tmp_path / "attention.tflite"
    _convert(_indexed_qkv(cut, tmp_path / "attention.onnx"), out)
    assert inner_transposes(out) <= 2  # one head split for q, k and v; one merge


def test_channel_split_after_a_source_transpose_stays_channels_last(tmp_path: Path) -> None:
    """Slices of a transposed tensor that feed convolutions (a Keras graph's channel split
    after its NHWC -> NCHW Transpose) are no attention's q, k, v: nothing is transposed."""
    g = _Graph()
    x = g.add("Transpose", ["x"], perm=[0, 3, 1, 2])
    axis = g.const(np.asarray([1], np.int64))
    halves = []
    for lo in (0, 2):
        bounds = [g.const(np.asarray([j], np.int64)) for j in (lo, lo + 2)]
        w = g.const(g.rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
        halves.append(g.add("Conv", [g.add("Slice", [x, *bounds, axis]), w], pads=[1] * 4))
    y = g.add("Relu", [g.add("Concat", halves, axis=1)])
    out = tmp_path / "split.tflite"
    _convert(g.save([1, 6, 6, 4], y, tmp_path / "split.onnx"), out)
    assert inner_transposes(out) == 0


@pytest.mark.parametrize("form", ["mm", "addmm", "addmm_transposed"])
def test_mm_form_is_one_fully_connected(tmp_path: Path, form: str) -> None:
    from modelconv.exporters.tflite.inspect import inspect_tflite

    g = _Graph()
    shape = (6, 8) if form == "addmm_transposed" else (8, 6)
    w = g.const(g.rng.standard_normal(shape).astype(np.float32))
    flat = g.add("Reshape", ["x", g.const(np.asarray([10, 8], np.int64))])
    if form == "mm":
        mm = g.add("MatMul", [flat, w])
    else:  # a Linear decomposed to addmm: Gemm with a bias
        b = g.const(g.rng.standard_normal(6).astype(np.float32))
        mm = g.add("Gemm", [flat, w, b], transB=int(form == "addmm_transposed"))
    y = g.add("Reshape", [mm, g.const(np.asarray([2, 5, 6], np.int64))])
    out = tmp_path / "mm.tflite"
    _convert(g.save([2, 5, 8], y, tmp_path / "mm.onnx"), out)
    assert inspect_tflite(out).op_counts == {"FULLY_CONNECTED": 1}


def _after_pass(model_path: Path) -> list[str]:
    model = ir.load(model_path)
    UnflattenBatchMatMulPass()(model)
    return [n.op_type for n in model.graph]


def _bmm(a: str, b: str, a_flat: list[int], b_flat: list[int], out_shape: list[int],
         g: _Graph) -> str:
    ra = g.add("Reshape", [a, g.const(np.asarray(a_flat, np.int64))])
    rb = g.add("Reshape", [b, g.const(np.asarray(b_flat, np.int64))])
    return g.add("Reshape", [g.add("MatMul", [ra, rb]),
                             g.const(np.asarray(out_shape, np.int64))])


@pytest.mark.parametrize(("out_shape", "folded"), [
    ([2, 3, 4, 3], True),    # the batch dims restored: one MatMul of the 4-D operands
    ([3, 2, 4, 3], False),   # another factorisation of the batch: another tensor
    ([2, 12, 3], False),     # a merge across a matrix dim
])
def test_pass_folds_only_reshapes_that_restore_the_batch_dims(
        tmp_path: Path, out_shape: list[int], folded: bool) -> None:
    g = _Graph()
    w = g.const(g.rng.standard_normal((2, 3, 5, 3)).astype(np.float32))
    y = _bmm("x", w, [6, 4, 5], [6, 5, 3], out_shape, g)
    ops = _after_pass(g.save([2, 3, 4, 5], y, tmp_path / "m.onnx"))
    assert ops == (["MatMul"] if folded else ["Reshape", "Reshape", "MatMul", "Reshape"])


@pytest.mark.parametrize(("x_shape", "w_batch", "expected"), [
    ([2, 1, 4, 5], [3], ["MatMul"]),                         # MatMul broadcasts [2,1]@[3]
    ([1, 1, 4, 5], [1], ["Expand", "Expand", "MatMul"]),     # [1,1]@[1] is not [2, 3]
])
def test_pass_drops_only_the_expands_matmul_broadcasting_makes(
        tmp_path: Path, x_shape: list[int], w_batch: list[int], expected: list[str]) -> None:
    g = _Graph()
    w = g.const(g.rng.standard_normal((*w_batch, 5, 3)).astype(np.float32))
    ea = g.add("Expand", ["x", g.const(np.asarray([2, 3, 4, 5], np.int64))])
    eb = g.add("Expand", [w, g.const(np.asarray([2, 3, 5, 3], np.int64))])
    y = _bmm(ea, eb, [6, 4, 5], [6, 5, 3], [2, 3, 4, 3], g)
    path = g.save(x_shape, y, tmp_path / "m.onnx")
    assert _after_pass(path) == expected
    _convert(path, tmp_path / "m.tflite")
