"""BitShift / Bitwise* and GridSample lowerings against exact expectations on inputs the ONNX
node tests do not cover: every 8/16/32-bit dtype with random values and shift counts (including
negative and >= width ones), and every GridSample mode x padding_mode x align_corners
combination (the node tests have cubic with zeros padding only) on grids reaching outside
[-1, 1]. LiteRT runs in a child process."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

pytest.importorskip("ai_edge_litert")

from modelconv.errors import UnsupportedOpsError
from modelconv.exporters.tflite import convert_to_tflite
from tests.litert_isolated import IsolatedLiteRT

INT_DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32"]


@pytest.fixture(scope="module")
def litert() -> Iterator[IsolatedLiteRT]:
    worker = IsolatedLiteRT()
    yield worker
    worker.close()


def _model(op: str, inputs: dict[str, np.ndarray], out_dtype: np.dtype, out_shape: list[int],
           opset: int = 22, **attrs: object) -> onnx.ModelProto:
    node = helper.make_node(op, list(inputs), ["z"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in inputs.items()],
        [helper.make_tensor_value_info("z", helper.np_dtype_to_tensor_dtype(out_dtype),
                                       out_shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(litert: IsolatedLiteRT, model: onnx.ModelProto,
         feeds: dict[str, np.ndarray]) -> np.ndarray:
    data = convert_to_tflite(ir.serde.deserialize_model(model))
    got = litert.run(data, feeds)
    assert got.status == "ok", got.message
    return got.outputs[0]


def _shift_expected(x: np.ndarray, y: np.ndarray, left: bool) -> np.ndarray:
    """ONNX BitShift: the count read as unsigned; bits shifted out are gone (wraps)."""
    width = x.dtype.itemsize * 8
    counts = y.astype(np.int64) % (1 << width)  # the unsigned reading of the count
    out = []
    for a, b in zip(x.astype(np.int64).tolist(), counts.tolist(), strict=True):
        b = min(b, 80)
        out.append((a << b) % (1 << width) if left else (a >> b) % (1 << width))
    return np.asarray(out, np.uint64).astype(np.dtype(f"uint{width}")).view(x.dtype)


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_bitshift_matches_onnx_semantics(dtype: str, direction: str,
                                         litert: IsolatedLiteRT) -> None:
    """Random values and counts (negative and >= width too) give ONNX's exact results."""
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, 64, endpoint=True).astype(dtype)
    width = info.bits
    y = rng.integers(max(info.min, -width - 8), width + 8, 64, endpoint=True).astype(dtype)
    model = _model("BitShift", {"x": x, "y": y}, x.dtype, [64], direction=direction)
    got = _run(litert, model, {"x": x, "y": y})
    np.testing.assert_array_equal(got, _shift_expected(x, y, direction == "LEFT"))


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot"])
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_bitwise_exact_or_refused(op: str, dtype: str, litert: IsolatedLiteRT) -> None:
    """Full-range random operands (broadcast) are exact; 32-bit And/Or is refused by name."""
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, (3, 4), endpoint=True).astype(dtype)
    b = rng.integers(info.min, info.max, (4,), endpoint=True).astype(dtype)
    feeds = {"a": a} if op == "BitwiseNot" else {"a": a, "b": b}
    model = _model(op, feeds, a.dtype, [3, 4], opset=18)
    expected = {"BitwiseAnd": lambda: a & b, "BitwiseOr": lambda: a | b,
                "BitwiseXor": lambda: a ^ b, "BitwiseNot": lambda: ~a}[op]()
    if op in ("BitwiseAnd", "BitwiseOr") and info.bits == 32:
        with pytest.raises(UnsupportedOpsError, match=f"{op} \\({dtype} inputs"):
            convert_to_tflite(ir.serde.deserialize_model(model))
        return
    np.testing.assert_array_equal(_run(litert, model, feeds), expected)


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
def test_grid_sample_matches_reference(mode: str, padding: str, align: int,
                                       litert: IsolatedLiteRT) -> None:
    """Every mode x padding x align_corners matches the ONNX reference (grid beyond +-1)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    grid = rng.uniform(-2.3, 2.3, (2, 3, 6, 2)).astype(np.float32)
    model = _model("GridSample", {"X": x, "Grid": grid}, x.dtype, [2, 3, 3, 6], opset=20,
                   mode=mode, padding_mode=padding, align_corners=align)
    expected = ReferenceEvaluator(model).run(None, {"X": x, "Grid": grid})[0]
    got = _run(litert, model, {"X": x, "Grid": grid})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_det_small_matrices(n: int, litert: IsolatedLiteRT) -> None:
    """Det of batched 1x1 / 2x2 / 3x3 matrices matches numpy (node tests have 2x2 only)."""
    x = np.random.default_rng(3).standard_normal((4, n, n)).astype(np.float32)
    model = _model("Det", {"x": x}, x.dtype, [4])
    np.testing.assert_allclose(_run(litert, model, {"x": x}), np.linalg.det(x),
                               rtol=1e-5, atol=1e-5)


def test_det_4x4_and_overlapping_unpool_refused() -> None:
    """4x4 Det and MaxUnpool with overlapping windows are refused with the reason named."""
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(UnsupportedOpsError, match="4x4"):
        convert_to_tflite(ir.serde.deserialize_model(_model("Det", {"x": x}, x.dtype, [])))
    v, i = np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 3, 3), np.int64)
    model = _model("MaxUnpool", {"v": v, "i": i}, v.dtype, [1, 1, 4, 4], kernel_shape=[2, 2],
                   strides=[1, 1])
    with pytest.raises(UnsupportedOpsError, match="overlapping windows"):
        convert_to_tflite(ir.serde.deserialize_model(model))


@pytest.mark.parametrize("ctm", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_align_matches_reference(mode: str, ctm: str, litert: IsolatedLiteRT) -> None:
    """Two images, rois reaching outside the image, spatial_scale 0.5: the ONNX reference."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    rois = rng.uniform(-4.0, 16.0, (5, 4)).astype(np.float32)
    rois[:, 2:] = rois[:, :2] + rng.uniform(0.5, 9.0, (5, 2)).astype(np.float32)
    batch = np.asarray([0, 1, 1, 0, 1], np.int64)
    feeds = {"X": x, "rois": rois, "batch_indices": batch}
    model = _model("RoiAlign", feeds, x.dtype, [5, 3, 2, 3], opset=16, mode=mode,
                   coordinate_transformation_mode=ctm, output_height=2, output_width=3,
                   sampling_ratio=2, spatial_scale=0.5)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    np.testing.assert_allclose(_run(litert, model, feeds), expected, rtol=1e-4, atol=1e-5)
