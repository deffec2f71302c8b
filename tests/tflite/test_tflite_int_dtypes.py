"""Integer / bool dtype table: every element-wise, comparison, reduction and matmul lowering
for every dtype its ONNX schema allows either runs in LiteRT with exactly onnxruntime's (or
the ONNX reference's) values, or is refused at export with an UnsupportedOpsError naming the
op and dtype. LiteRT runs in a child process: a kernel abort fails one case, not pytest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

pytest.importorskip("ai_edge_litert")

from modelconv.errors import UnsupportedOpsError
from modelconv.exporters.tflite import convert_to_tflite
from modelconv.options import ConvertOptions
from tests.litert_isolated import IsolatedLiteRT

OPSET = 21
DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
          "int64": np.int64, "uint16": np.uint16, "uint32": np.uint32, "bool": np.bool_,
          "float16": np.float16}


@dataclass
class Op:
    """One op of the table: how many runtime inputs, attributes, constant inputs."""

    op: str
    arity: int = 2
    attrs: dict[str, Any] = field(default_factory=dict)
    consts: list[np.ndarray] = field(default_factory=list)  # trailing constant inputs
    shapes: list[list[int]] | None = None
    nonzero: bool = False  # second input never 0 (Div, Mod)
    small: bool = False  # small non-negative values (Pow)


OPS = [
    *[Op(n) for n in ("Add", "Sub", "Mul", "Max", "Min")],
    Op("Div", nonzero=True), Op("Mod", nonzero=True), Op("Pow", small=True),
    *[Op(n) for n in ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual")],
    Op("And"), Op("Or"), Op("Xor"), Op("Not", 1),
    *[Op(n, 1) for n in ("Abs", "Neg", "Sign", "Relu", "Identity")],
    Op("Clip", 1),  # bounds: see build()
    *[Op(n, 1, {"keepdims": 0}, consts=[np.asarray([1], np.int64)])
      for n in ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceMean")],
    Op("ArgMax", 1, {"axis": 1}),
    Op("MatMul", shapes=[[2, 3], [3, 4]]),
    Op("Where", 3),
    Op("CumSum", 1, consts=[np.asarray(1, np.int64)]),
    # Data movement: kernels differ in which types they copy.
    Op("Concat", 2, {"axis": 1}), Op("Transpose", 1, {"perm": [1, 0]}),
    Op("Gather", 1, {"axis": 1}, consts=[np.asarray([2, 0], np.int64)]),
    Op("Slice", 1, consts=[np.asarray([1], np.int64), np.asarray([3], np.int64),
                           np.asarray([1], np.int64)]),
    Op("Pad", 1, consts=[np.asarray([0, 1, 1, 0], np.int64)]),
    Op("Pad", 1, {"mode": "reflect"}, consts=[np.asarray([0, 1, 0, 1], np.int64)]),
    Op("Pad", 1, consts=[np.asarray([0, 1, 1, 0], np.int64), "one"]),  # type: ignore[list-item]
    Op("Tile", 1, consts=[np.asarray([2, 1], np.int64)]),
    Op("Expand", 1, consts=[np.asarray([2, 2, 3], np.int64)]),
    Op("Reshape", 1, consts=[np.asarray([3, 2], np.int64)]),
    Op("DepthToSpace", 1, {"blocksize": 2}, shapes=[[1, 4, 2, 3]]),
    Op("SpaceToDepth", 1, {"blocksize": 2}, shapes=[[1, 2, 4, 6]]),
    Op("MaxPool", 1, {"kernel_shape": [2, 2]}, shapes=[[1, 2, 4, 6]]),
    Op("MaxPool", 1, {"kernel_shape": [2, 2], "pads": [1, 0, 0, 1]}, shapes=[[1, 2, 4, 6]]),
    Op("ArgMin", 1, {"axis": 0}),
    Op("Split", 1, {"axis": 1, "num_outputs": 3}),
    Op("Split", 1, {"axis": 1}, consts=[np.asarray([1, 2], np.int64)]),
]


def allowed(op: str) -> dict[str, set[str]]:
    """Type constraint name -> dtypes the ONNX schema (at OPSET) allows."""
    schema = onnx.defs.get_schema(op, OPSET)
    return {c.type_param_str: {t[7:-1] for t in c.allowed_type_strs}
            for c in schema.type_constraints}


def cases() -> Iterator[tuple[Op, str]]:
    """(op, dtype) pairs the schema allows."""
    for spec in OPS:
        for name in DTYPES:
            if name == "float16" and spec.op == "Mod":
                continue  # float Mod needs fmod=1 (refused: FLOOR_MOD is Python-style)
            if name in allowed(spec.op).get("T", set()):
                yield spec, name


CASES = list(cases())


def _case_id(spec: Op, dtype: str) -> str:
    mode = f"-{spec.attrs['mode']}" if "mode" in spec.attrs else ""
    mode += "-pads" if "pads" in spec.attrs else ""
    variant = f"-{len(spec.consts)}" if spec.op in ("Pad", "Split") else ""
    return f"{spec.op}{mode}{variant}-{dtype}"


IDS = [_case_id(s, d) for s, d in CASES]


def _values(rng: np.random.Generator, dtype: Any, shape: list[int], spec: Op, k: int
            ) -> np.ndarray:
    if np.dtype(dtype) == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    info = np.iinfo(dtype) if np.dtype(dtype).kind != "f" else np.iinfo(np.int16)
    if spec.small:
        return rng.integers(0, 4, shape).astype(dtype)
    lo, hi = max(int(info.min), -100), min(int(info.max), 100)
    arr = rng.integers(lo, hi + 1, shape).astype(dtype)
    if spec.nonzero and k == 1:
        arr[arr == 0] = 3
    return arr


def build(spec: Op, dtype_name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The one-node model for ``spec`` at ``dtype_name`` and its seeded feeds."""
    dtype = DTYPES[dtype_name]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    rng = np.random.default_rng(0)
    shapes = spec.shapes or [[2, 3]] * spec.arity
    names = [f"x{k}" for k in range(spec.arity)]
    feeds = {n: _values(rng, dtype, s, spec, k)
             for k, (n, s) in enumerate(zip(names, shapes, strict=True))}
    infos = [helper.make_tensor_value_info(n, elem, s) for n, s in zip(names, shapes,
                                                                        strict=True)]
    inits = []
    if spec.op == "Where":
        feeds["x0"] = feeds["x0"].astype(np.bool_) if dtype_name != "bool" else feeds["x0"]
        infos[0] = helper.make_tensor_value_info("x0", TensorProto.BOOL, shapes[0])
    if spec.op == "Clip":
        lo, hi = (np.asarray(v, dtype) for v in ((0, 1) if dtype_name.startswith("u")
                                                  else (-5, 7)))
        inits = [onnx.numpy_helper.from_array(lo, "lo"), onnx.numpy_helper.from_array(hi, "hi")]
        names += ["lo", "hi"]
    for k, c in enumerate(spec.consts):
        if isinstance(c, str):  # a constant of the data dtype
            inits.append(onnx.numpy_helper.from_array(np.ones((), dtype), f"c{k}"))
            names.append(f"c{k}")
        if isinstance(c, np.ndarray):
            inits.append(onnx.numpy_helper.from_array(c, f"c{k}"))
            names.append(f"c{k}")
    n_out = spec.attrs.get("num_outputs", 2 if spec.op == "Split" else 1)
    outs = [f"y{k}" for k in range(n_out)]
    node = helper.make_node(spec.op, names, outs, **spec.attrs)
    graph = helper.make_graph([node], "g", infos,
                              [helper.make_value_info(o, onnx.TypeProto()) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for out, inf in zip(model.graph.output, inferred.graph.output, strict=True):
        out.CopyFrom(inf)
    return model, feeds


def reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime's outputs, or the ONNX reference evaluator's where ORT has no kernel."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        return [np.asarray(o) for o in sess.run(None, feeds)]
    except Exception:  # NOT_IMPLEMENTED for this dtype: use the spec's reference
        from onnx.reference import ReferenceEvaluator

        return [np.asarray(o) for o in ReferenceEvaluator(model).run(None, feeds)]


@pytest.fixture(scope="module")
def litert() -> Iterator[IsolatedLiteRT]:
    worker = IsolatedLiteRT()
    yield worker
    worker.close()


# Full int8 quantization is for float tensors; integer data must stay exact under it (it
# requantized a model's own int8 values). float16 math quantized to int8 is approximate.
RUNS = [(s, d, q) for q in (None, "int8") for s, d in CASES if not (q and d == "float16")]
RUN_IDS = [f"{i}{'-full_int8' if q else ''}" for (s, d, q), i in
           zip(RUNS, IDS + [i for (_, d), i in zip(CASES, IDS, strict=True) if d != "float16"],
               strict=True)]


@pytest.mark.filterwarnings("ignore:int8 quantization without calibration")
@pytest.mark.parametrize(("spec", "dtype", "quantize"), RUNS, ids=RUN_IDS)
def test_int_dtype(spec: Op, dtype: str, quantize: str | None, litert: IsolatedLiteRT) -> None:
    """Exact in LiteRT, or refused with the op and dtype named."""
    model, feeds = build(spec, dtype)
    try:
        data = convert_to_tflite(ir.serde.deserialize_model(model),
                                 ConvertOptions(quantize=quantize,
                                                calibration="random" if quantize else None))
    except UnsupportedOpsError as exc:
        assert any(spec.op in key and dtype in key for key in exc.unsupported), exc.unsupported
        assert spec.op not in ALWAYS_LOWERED or dtype not in ALWAYS_LOWERED[spec.op]
        return
    ref = reference(model, feeds)
    got = litert.run(data, feeds)
    assert got.status == "ok", got.message
    assert len(got.outputs) == len(ref)
    for r, g in zip(ref, got.outputs, strict=True):
        assert g.dtype == r.dtype and g.shape == r.shape, (g.dtype, r.dtype, g.shape, r.shape)
        if dtype == "float16" and spec.op in ACCUMULATING:
            np.testing.assert_allclose(g, r, rtol=2e-3)  # f32 accumulation, ORT's differs
        else:
            np.testing.assert_array_equal(g, r)


# float16 reductions: LiteRT accumulates in float32 (CAST around the op), onnxruntime in
# its own order and precision, so they agree to float16 precision, not bit for bit.
ACCUMULATING = {"MatMul", "ReduceSum", "ReduceMean", "ReduceProd", "CumSum"}

# Rows that must convert (not merely be refused): the integer types models really use.
ALWAYS_LOWERED = {op: {"int8", "uint8", "int16", "int32", "int64"} for op in
                  ("Add", "Sub", "Mul", "Max", "Min", "Equal", "Greater", "Less", "Clip",
                   "Neg", "Abs", "Relu", "Where")}


def _one_node(node: onnx.NodeProto, inputs: dict[str, np.ndarray],
              consts: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    infos = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype),
                                           list(v.shape)) for n, v in inputs.items()]
    inits = [onnx.numpy_helper.from_array(v, n) for n, v in (consts or {}).items()]
    graph = helper.make_graph([node], "g", infos,
                              [helper.make_value_info(o, onnx.TypeProto()) for o in node.output],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for out, inf in zip(model.graph.output, inferred.graph.output, strict=True):
        out.CopyFrom(inf)
    return model


def _ok_or_refused(model: onnx.ModelProto, feeds: dict[str, np.ndarray], op: str,
                   litert: IsolatedLiteRT, what: str) -> str:
    """'refused' (typed, naming ``op`` and ``what``) or 'ok' after an exact LiteRT run."""
    try:
        data = convert_to_tflite(ir.serde.deserialize_model(model))
    except UnsupportedOpsError as exc:
        assert any(op in key and what in key for key in exc.unsupported), exc.unsupported
        return "refused"
    ref = reference(model, feeds)
    got = litert.run(data, feeds)
    assert got.status == "ok", got.message
    for r, g in zip(ref, got.outputs, strict=True):
        assert g.dtype == r.dtype and g.shape == r.shape, (g.dtype, r.dtype, g.shape, r.shape)
        np.testing.assert_array_equal(g, r)
    return "ok"


CASTS = [(a, b) for a in DTYPES for b in ("int32", "int64", "float32", a) if a != b]


@pytest.mark.parametrize(("src", "dst"), CASTS, ids=[f"{a}-to-{b}" for a, b in CASTS])
def test_cast_both_ways(src: str, dst: str, litert: IsolatedLiteRT) -> None:
    """CAST kernels take every TFLite integer type, both ways (values wrap as in ORT)."""
    to = {**DTYPES, "float32": np.float32}
    x = _values(np.random.default_rng(1), DTYPES[src], [2, 5], Op("Cast"), 0)
    node = helper.make_node("Cast", ["x"], ["y"], to=helper.np_dtype_to_tensor_dtype(
        np.dtype(to[dst])))
    assert _ok_or_refused(_one_node(node, {"x": x}), {"x": x}, "Cast", litert, src) == "ok"


POWS = [("int32", "float32", "ok"), ("float32", "int64", "ok"), ("float32", "int32", "ok"),
        ("int32", "int64", "ok"), ("int64", "float32", "refused"), ("int64", "int64", "refused")]


@pytest.mark.parametrize(("base", "exp", "expect"), POWS, ids=[f"{b}^{e}" for b, e, _ in POWS])
def test_mixed_dtype_pow(base: str, exp: str, expect: str, litert: IsolatedLiteRT) -> None:
    """ONNX Pow allows a base and an exponent of different dtypes; POW needs one dtype."""
    to = {**DTYPES, "float32": np.float32}
    x = np.asarray([[1, 2, 3], [4, 5, 2]], to[base])
    e = np.asarray([2, 3, 1], to[exp])
    node = helper.make_node("Pow", ["x", "e"], ["y"])
    got = _ok_or_refused(_one_node(node, {"x": x}, {"e": e}), {"x": x}, "Pow", litert, base)
    assert got == expect


MATMULS = [([4], [4, 3]), ([2, 4], [4]), ([4], [4]), ([2, 3, 4], [4]), ([4], [2, 4, 3])]


@pytest.mark.parametrize("const_b", [False, True], ids=["runtime_b", "const_b"])
@pytest.mark.parametrize(("a", "b"), MATMULS, ids=[f"{a}x{b}" for a, b in MATMULS])
def test_matmul_1d_operands(a: list[int], b: list[int], const_b: bool,
                            litert: IsolatedLiteRT) -> None:
    """numpy matmul of 1-D operands (a row on the left, a column on the right)."""
    rng = np.random.default_rng(2)
    xa, xb = (rng.integers(-3, 4, s).astype(np.float32) for s in (a, b))
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    feeds = {"a": xa} if const_b else {"a": xa, "b": xb}
    model = _one_node(node, feeds, {"b": xb} if const_b else None)
    assert _ok_or_refused(model, feeds, "MatMul", litert, "float32") == "ok"


def test_empty_shape_output_refused() -> None:
    """Shape with start > end is a zero-element output LiteRT cannot return: refused, named."""
    x = np.zeros((2, 3, 4), np.float32)
    model = _one_node(helper.make_node("Shape", ["x"], ["s"], start=2, end=1, name="shp"),
                      {"x": x})
    with pytest.raises(UnsupportedOpsError) as info:
        convert_to_tflite(ir.serde.deserialize_model(model))
    assert info.value.unsupported == {"Shape (zero-element graph output 's')": ["shp"]}


def test_dtype_and_mode_limits_reported_together() -> None:
    """All kernel limits of a model come in ONE UnsupportedOpsError, before any lowering."""
    a = helper.make_tensor_value_info("a", TensorProto.INT64, [2, 3])
    m = helper.make_tensor_value_info("m", TensorProto.INT32, [3, 3])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    xi = helper.make_tensor_value_info("xi", TensorProto.INT32, [1, 2, 4, 4])
    nodes = [helper.make_node("Div", ["a", "a"], ["d"], name="div"),
             helper.make_node("MatMul", ["m", "m"], ["mm"], name="mm"),
             helper.make_node("Resize", ["xi", "", "sc"], ["r"], name="rs", mode="linear"),
             helper.make_node("Dropout", ["x", "", "t"], ["dr"], name="drop")]
    consts = [onnx.numpy_helper.from_array(np.asarray([1, 1, 2, 2], np.float32), "sc"),
              onnx.numpy_helper.from_array(np.asarray(True), "t")]
    outs = [helper.make_value_info(o, onnx.TypeProto()) for o in ("d", "mm", "r", "dr")]
    graph = helper.make_graph(nodes, "g", [a, m, x, xi], outs, consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model = onnx.shape_inference.infer_shapes(model)  # fills the outputs' types
    with pytest.raises(UnsupportedOpsError) as info:
        convert_to_tflite(ir.serde.deserialize_model(model))
    assert info.value.unsupported == {
        "Div (int64 inputs: no LiteRT DIV kernel)": ["div"],
        "MatMul (int32 inputs: no LiteRT BATCH_MATMUL kernel)": ["mm"],
        "Resize (int32 input (mode=linear: float32 only))": ["rs"],
        "Dropout (training_mode=True)": ["drop"],
    }
