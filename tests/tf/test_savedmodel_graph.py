"""The TensorFlow-free graph route for SavedModels (modelconv.importers.tf).

- shipped fixtures (a Keras 3 ``model.export()`` and a plain ``tf.Module``) convert without
  TensorFlow and match the outputs TensorFlow gave when they were made;
- hand-written ``saved_model.pb`` files (protobuf wire format written here) check the graph
  walker: function inlining, argument binding, and every way a hostile or broken graph is
  refused with a ModelLoadError / UnsupportedOpsError instead of a crash or a hang;
- the Conv + per-channel Mul/Add folding pass the route relies on.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import modelconv
from modelconv import protowire as pw
from modelconv.errors import ModelLoadError, UnsafeModelError, UnsupportedOpsError
from modelconv.importers.tf.graph.convert import convert_signature
from modelconv.options import ConvertOptions
from modelconv.verification.runners import OnnxRuntimeRunner
from tests.paths import ROOT

FIX = ROOT / "fixtures" / "keras"


def _reference(name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(FIX / f"{name}.npz") as data:
        ins = [data[k] for k in sorted(k for k in data.files if k.startswith("in"))]
        outs = [data[f"out{i}"] for i in range(sum(k.startswith("out") for k in data.files))]
    return ins, outs


def _run(path: Path, feeds: list[np.ndarray]) -> list[np.ndarray]:
    return OnnxRuntimeRunner.from_path(path, ConvertOptions()).run(feeds)


def _close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-4 * max(1.0, float(np.abs(w).max())))


# --------------------------------------------------------------------------------------
# shipped fixtures


@pytest.mark.parametrize("name", ["k3_savedmodel", "module_savedmodel"])
def test_fixture_converts_on_the_graph_route(name: str, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = modelconv.convert(FIX / name, out, verify=False)
    assert result.source_format == "savedmodel-graph"
    assert not result.warnings
    ins, want = _reference(name)
    _close(_run(out, ins), want)


def test_keras3_export_graph_is_clean(tmp_path: Path) -> None:
    """BatchNorm arithmetic folded into the conv; transposes only at the input and where
    Flatten needs TensorFlow's element order (the SE gate's [N,C,1,1] moves by Reshape)."""
    out = tmp_path / "m.onnx"
    modelconv.convert(FIX / "k3_savedmodel", out, verify=False)
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert ops.count("Conv") == 2
    assert ops.count("Transpose") == 2
    # Dense on [N,1,1,C] (tensordot) and Flatten compute their Reshape targets from
    # tf.shape of a dynamic batch: read as constants with -1 for the batch
    assert not {"Shape", "Gather", "Concat", "ReduceProd"} & set(ops), ops
    assert "BatchNormalization" not in ops and "Sub" not in ops
    first_mul = [n for n in onnx.load(out).graph.node if n.op_type == "Mul"]
    conv_outputs = {n.output[0] for n in onnx.load(out).graph.node if n.op_type == "Conv"}
    # swish's Mul reads the conv output; no BatchNorm scale sits between them any more
    assert any(conv_outputs & set(n.input) for n in first_mul)


def test_graph_route_never_imports_tensorflow(tmp_path: Path) -> None:
    code = (
        "import sys, modelconv\n"
        f"r = modelconv.convert({str(FIX / 'k3_savedmodel')!r}, {str(tmp_path / 'a.onnx')!r},"
        " verify=False)\n"
        "assert r.source_format == 'savedmodel-graph', r.source_format\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tf_keras', 'tf2onnx') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_graph_route_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    modelconv.convert(FIX / "module_savedmodel", a, verify=False)
    modelconv.convert(FIX / "module_savedmodel", b, verify=False)
    assert a.read_bytes() == b.read_bytes()


# --------------------------------------------------------------------------------------
# a protobuf writer for hand-made SavedModels


def _varint(value: int) -> bytes:
    return pw.encode_varint(value & (1 << 64) - 1)  # negative ints: two's complement


def _f(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return pw.encode_varint(number << 3) + _varint(value)
    return pw.encode_field(number, pw.LEN, value.encode() if isinstance(value, str) else value)


def _shape(dims: list[int]) -> bytes:
    return b"".join(_f(2, _f(1, d)) for d in dims)


def _tensor(array: np.ndarray, dims: list[int] | None = None, raw: bytes | None = None
            ) -> bytes:
    dtype = {np.dtype("float32"): 1, np.dtype("int32"): 3}[array.dtype]
    shape = list(array.shape) if dims is None else dims
    return _f(1, dtype) + _f(2, _shape(shape)) + _f(4, array.tobytes() if raw is None else raw)


def _attr(key: str, kind: str, value: object) -> bytes:
    numbers = {"s": 2, "i": 3, "b": 5, "type": 6, "tensor": 8}
    if kind == "func":
        body = _f(10, _f(1, str(value)))
    elif kind == "ilist":
        body = _f(1, _f(3, b"".join(_varint(int(v)) for v in value)))  # type: ignore[attr-defined]
    else:
        body = _f(numbers[kind], value)  # type: ignore[arg-type]
    return _f(5, _f(1, key) + _f(2, body))


def _node(name: str, op: str, inputs: list[str], *attrs: bytes) -> bytes:
    return _f(1, name) + _f(2, op) + b"".join(_f(3, i) for i in inputs) + b"".join(attrs)


def _function(name: str, args: list[str], outs: list[str], nodes: list[bytes],
              ret: dict[str, str]) -> bytes:
    sig = _f(1, name) + b"".join(_f(2, _f(1, a) + _f(3, 1)) for a in args)
    sig += b"".join(_f(3, _f(1, o) + _f(3, 1)) for o in outs)
    body = _f(1, sig) + b"".join(_f(3, n) for n in nodes)
    return body + b"".join(_f(4, _f(1, k) + _f(2, v)) for k, v in ret.items())


def _write(folder: Path, graph_nodes: list[bytes], functions: list[bytes],
           outputs: dict[str, str], inputs: dict[str, str] | None = None,
           input_dtype: int = 1) -> Path:
    inputs = inputs if inputs is not None else {"x": "x:0"}
    graph = b"".join(_f(1, n) for n in graph_nodes)
    graph += _f(2, b"".join(_f(1, fn) for fn in functions))

    def info(name: str, dtype: int = 1) -> bytes:
        return _f(1, name) + _f(2, dtype) + _f(3, _shape([-1, 4]))

    sig = b"".join(_f(1, _f(1, k) + _f(2, info(v, input_dtype))) for k, v in inputs.items())
    sig += b"".join(_f(2, _f(1, k) + _f(2, info(v))) for k, v in outputs.items())
    meta = _f(1, _f(4, "serve")) + _f(2, graph) + _f(5, _f(1, "serving_default") + _f(2, sig))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "saved_model.pb").write_bytes(_f(1, 1) + _f(2, meta))
    return folder


SCALE = np.asarray([1.0, -2.0, 0.5, 3.0], np.float32)
PLACEHOLDER = _node("x", "Placeholder", [], _attr("dtype", "type", 1))


def _body(mul_inputs: list[str] | None = None, relu_inputs: list[str] | None = None,
          extra: list[bytes] | None = None, const: bytes | None = None) -> list[bytes]:
    return [
        _node("c", "Const", [], _attr("dtype", "type", 1),
              _attr("value", "tensor", const if const is not None else _tensor(SCALE))),
        _node("m", "Mul", mul_inputs or ["a", "c:output:0"]),
        _node("r", "Relu", relu_inputs or ["m:z:0"]),
        *(extra or []),
    ]


def _model(folder: Path, body: list[bytes] | None = None, call_inputs: list[str] | None = None,
           callee: str = "fn", more: list[bytes] | None = None) -> Path:
    fn = _function("fn", ["a"], ["y"], body if body is not None else _body(),
                   {"y": "r:activations:0"})
    call = _node("call", "PartitionedCall", call_inputs or ["x"], _attr("f", "func", callee))
    return _write(folder, [PLACEHOLDER, call], [fn, *(more or [])], {"y": "call:0"})


def test_hand_made_graph_converts(tmp_path: Path) -> None:
    graph = convert_signature(_model(tmp_path / "sm"), "serving_default")
    assert graph.inputs == [("x", "float32", (None, 4))] and graph.outputs == ["y"]
    path = tmp_path / "m.onnx"
    ir.save(graph.model, path)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    _close(_run(path, [x]), [np.maximum(x * SCALE, 0)])


def test_nested_calls_are_inlined(tmp_path: Path) -> None:
    """fn -> inner (a function called by name as an op) -> the body."""
    inner = _function("inner", ["a"], ["y"], _body(), {"y": "r:activations:0"})
    outer = [_node("k", "inner", ["a"]), _node("r", "Identity", ["k:y:0"])]
    fn = _function("fn", ["a"], ["y"], outer, {"y": "r:output:0"})
    call = _node("call", "StatefulPartitionedCall", ["x"], _attr("f", "func", "fn"))
    folder = _write(tmp_path / "sm", [PLACEHOLDER, call], [fn, inner], {"y": "call:0"})
    path = tmp_path / "m.onnx"
    ir.save(convert_signature(folder, "serving_default").model, path)
    x = np.ones((1, 4), np.float32)
    _close(_run(path, [x]), [np.maximum(SCALE, 0)[None]])


@pytest.mark.parametrize("case, error, match", [
    ("cycle", ModelLoadError, "cycle"),
    ("recursion", ModelLoadError, "nested deeper"),
    ("missing function", ModelLoadError, "library lacks"),
    ("argument count", ModelLoadError, "passes 2 arguments"),
    ("undefined reference", ModelLoadError, "does not define"),
    ("huge splat constant", ModelLoadError, "repeated values"),
    ("short constant", ModelLoadError, "holds 8 bytes"),
    ("bad shape operand", ModelLoadError, "Reshape"),
    ("unknown ops", UnsupportedOpsError, "FancyOp.*OtherOp"),
    ("no signature", ModelLoadError, "no signature"),
])
def test_broken_graphs_are_refused(tmp_path: Path, case: str, error: type, match: str) -> None:
    folder = tmp_path / "sm"
    signature = "serving_default"
    if case == "cycle":
        _model(folder, _body(mul_inputs=["r:activations:0", "c:output:0"]))
    elif case == "recursion":
        _model(folder, _body(extra=[_node("again", "PartitionedCall", ["a"],
                                          _attr("f", "func", "fn"))],
                             relu_inputs=["again:output:0"]))
    elif case == "missing function":
        _model(folder, callee="nope")
    elif case == "argument count":
        _model(folder, call_inputs=["x", "x"])
    elif case == "undefined reference":
        _model(folder, _body(relu_inputs=["ghost:y:0"]))
    elif case == "huge splat constant":
        splat = _f(1, 1) + _f(2, _shape([1 << 13, 1 << 13])) + _f(5, b"\x00\x00\x80\x3f")
        _model(folder, _body(const=splat))
    elif case == "short constant":
        _model(folder, _body(const=_tensor(SCALE, raw=SCALE.tobytes()[:8])))
    elif case == "bad shape operand":
        shape = _node("s", "Const", [], _attr("dtype", "type", 3),
                      _attr("value", "tensor", _tensor(np.asarray([3, 5], np.int32))))
        _model(folder, [*_body(relu_inputs=["bad:output:0"]), shape,
                        _node("bad", "Reshape", ["c:output:0", "s:output:0"])])
    elif case == "unknown ops":
        _model(folder, _body(mul_inputs=["f1:y:0", "c:output:0"],
                             extra=[_node("f1", "FancyOp", ["o1:y:0"]),
                                    _node("o1", "OtherOp", ["a"])]))
    elif case == "no signature":
        _model(folder)
        signature = "predict"
    with pytest.raises(error, match=match) as info:
        convert_signature(folder, signature)
    assert str(folder) in str(info.value)


def _attr_body(mul_attrs: list[bytes], extra: list[bytes] | None = None,
               relu_input: str = "m:z:0") -> list[bytes]:
    return [_node("c", "Const", [], _attr("dtype", "type", 1), _attr("value", "tensor",
                                                                    _tensor(SCALE))),
            _node("m", "Mul", ["a", "c:output:0"], *mul_attrs),
            *(extra or []),
            _node("r", "Relu", [relu_input])]


_INT = {"dtype": _attr("dtype", "type", 3)}
GATHER_INPUTS = [_node("i", "Const", [], _INT["dtype"],
                       _attr("value", "tensor", _tensor(np.asarray([[1, 0]], np.int32)))),
                 _node("ax", "Const", [], _INT["dtype"],
                       _attr("value", "tensor", _tensor(np.asarray(1, np.int32))))]
CAST = [_node("k", "Cast", ["m:z:0"], _attr("SrcT", "type", 1), _attr("DstT", "type", 1),
              _attr("Truncate", "b", 1))]


@pytest.mark.parametrize("mul_attrs, extra, relu_input, refused", [
    ([_attr("frobnicate", "i", 3)], None, "m:z:0", ["Mul (attribute frobnicate=3 is not read)"]),
    ([_attr("incompatible_shape_error", "b", 0)], None, "m:z:0",  # Mul has no such attribute
     ["Mul (attribute incompatible_shape_error=False is not read)"]),
    ([_attr("T", "type", 8)], None, "m:z:0", ["Mul (attribute T=complex64)"]),
    ([], CAST, "k:y:0", ["Cast (attribute Truncate=True)"]),
    ([_attr("T", "type", 7)], CAST, "k:y:0",  # all at once, before anything is emitted
     ["Cast (attribute Truncate=True)", "Mul (attribute T=string)"]),
])
def test_attributes_a_handler_does_not_take_are_refused(
        tmp_path: Path, mul_attrs: list[bytes], extra: list[bytes] | None, relu_input: str,
        refused: list[str]) -> None:
    """Consume or refuse: an attribute the op's handler does not declare, a fixed one at
    another value than TensorFlow's default, or a dtype it cannot compute in is named (op,
    attribute and value, node) in one UnsupportedOpsError before any node is converted."""
    folder = _model(tmp_path / "sm", _attr_body(mul_attrs, extra, relu_input))
    with pytest.raises(UnsupportedOpsError) as info:
        convert_signature(folder, "serving_default")
    assert sorted(info.value.unsupported) == refused
    for where in info.value.unsupported.values():
        assert where and all(w.startswith("fn/") for w in where), where


def test_runtime_annotations_and_declared_attributes_are_accepted(tmp_path: Path) -> None:
    """``_``-prefixed annotations (never OpDef attributes) and declared attributes at any
    value convert; a fixed attribute present at its default value too."""
    gather_ok = [*GATHER_INPUTS,
                 _node("g", "GatherV2", ["m:z:0", "i:output:0", "ax:output:0"],
                       _attr("batch_dims", "i", 0), _attr("Taxis", "type", 3)),
                 _node("k", "Cast", ["g:output:0"], _attr("SrcT", "type", 1),
                       _attr("DstT", "type", 1), _attr("Truncate", "b", 0))]
    body = _attr_body([_attr("_class", "s", b"loc:@c"), _attr("T", "type", 1),
                       _attr("_has_manual_control_dependencies", "b", 1)], gather_ok,
                      "k:y:0")
    path = tmp_path / "m.onnx"
    ir.save(convert_signature(_model(tmp_path / "sm", body), "serving_default").model, path)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    _close(_run(path, [x]), [np.maximum(x * SCALE, 0)[:, [1, 0]][:, None]])


@pytest.mark.parametrize("dtype, name", [(7, "string"), (8, "complex64")])
def test_signature_input_of_an_uncomputable_dtype_is_refused(tmp_path: Path, dtype: int,
                                                             name: str) -> None:
    """A string or complex signature input is refused naming it (it used to be declared
    float32, numpy's stand-in for a dtype the converter does not know)."""
    fn = _function("fn", ["a"], ["y"], _body(), {"y": "r:activations:0"})
    call = _node("call", "PartitionedCall", ["x"], _attr("f", "func", "fn"))
    folder = _write(tmp_path / "sm", [PLACEHOLDER, call], [fn], {"y": "call:0"},
                    input_dtype=dtype)
    with pytest.raises(UnsupportedOpsError) as info:
        convert_signature(folder, "serving_default")
    assert info.value.unsupported == {name: ["signature input 'x'"]}


def _attr_reads(module: object) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per top-level function of ``module``: the attribute names it reads with a literal
    (``node.attr("padding")``, nested functions and lambdas included) and the functions of
    the module it calls."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    reads: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        reads[fn.name], calls[fn.name] = set(), set()
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "attr" and node.args and \
                    isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value,
                                                                          str):
                reads[fn.name].add(node.args[0].value)
            elif isinstance(func, ast.Name):
                calls[fn.name].add(func.id)
    return reads, calls


def test_handlers_declare_every_attribute_they_read() -> None:
    """The other direction of consume or refuse, without TensorFlow: every attribute a
    handler (or a helper of its module it calls) reads is one it declares, so that no read
    attribute escapes :func:`attr_problems`."""
    import importlib

    from modelconv.importers.tf.graph.core import OP_ATTRS, OPS

    undeclared = {}
    for op in OPS:
        handler = OPS.get(op)
        assert handler is not None and handler.__doc__, f"{op}: handler without a docstring"
        reads, calls = _attr_reads(importlib.import_module(handler.__module__))
        top = handler.__qualname__.split(".")[0]
        seen, stack, read = set(), [top], set()
        while stack:
            name = stack.pop()
            if name in seen or name not in reads:
                continue
            seen.add(name)
            read |= reads[name]
            stack.extend(calls[name])
        spec = OP_ATTRS[op]
        missing = read - spec.attrs - set(spec.fixed) - {"_output_shapes"}
        if missing:
            undeclared[op] = sorted(missing)
    assert not undeclared, undeclared


def test_file_ops_refused_before_conversion(tmp_path: Path) -> None:
    from modelconv.importers.tf import import_savedmodel

    folder = _model(tmp_path / "sm", _body(extra=[_node("leak", "ReadFile", ["a"])]))
    with pytest.raises(UnsafeModelError, match="ReadFile"):
        import_savedmodel(folder, ConvertOptions())


def test_unsupported_op_without_tensorflow_names_it(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from modelconv.importers.tf import import_savedmodel
    from modelconv.workers import tf_worker

    monkeypatch.setattr(tf_worker, "tf_available", lambda: False)
    folder = _model(tmp_path / "sm", _body(mul_inputs=["f1:y:0", "c:output:0"],
                                           extra=[_node("f1", "FancyOp", ["a"])]))
    with pytest.raises(UnsupportedOpsError, match="FancyOp"):
        import_savedmodel(folder, ConvertOptions())


# --------------------------------------------------------------------------------------
# Conv + per-channel Mul/Add folding


def _conv_chain(scale_shape: tuple[int, ...]) -> ir.Model:
    from modelconv.ir.builder import GraphBuilder

    rng = np.random.default_rng(1)
    b = GraphBuilder()
    x = b.add_input("x", np.float32, [1, 3, 6, 6])
    w = b.initializer(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    y = b.Conv(x, w, pads=[1, 1, 1, 1])
    y = b.Add(y, b.initializer(rng.normal(size=(1, 4, 1, 1)).astype(np.float32), "bias"))
    y = b.Mul(y, b.initializer(rng.normal(size=scale_shape).astype(np.float32), "scale"))
    y = b.Sub(y, b.initializer(rng.normal(size=(4, 1, 1)).astype(np.float32), "shift"))
    b.set_outputs([b.Relu(y)], ["y"])
    return b.build()


@pytest.mark.parametrize("scale_shape, folded", [((1, 4, 1, 1), True), ((1, 1, 1, 6), False)])
def test_conv_affine_folding(tmp_path: Path, scale_shape: tuple[int, ...], folded: bool) -> None:
    from modelconv.passes.fuse_affine import FuseConvAffinePass

    x = np.random.default_rng(2).normal(size=(1, 3, 6, 6)).astype(np.float32)
    before, after = tmp_path / "a.onnx", tmp_path / "b.onnx"
    model = _conv_chain(scale_shape)
    ir.save(model, before)
    FuseConvAffinePass()(model)
    ir.save(model, after)
    ops = [n.op_type for n in model.graph]
    assert ops == (["Conv", "Relu"] if folded else ["Conv", "Mul", "Sub", "Relu"])
    _close(_run(after, [x]), _run(before, [x]))


def test_folding_keeps_scalars_scalar() -> None:
    """Squeeze folds to a 0-d constant; the Unsqueeze after it must see rank 0 (a folded
    scalar used to be installed as shape [1], so Unsqueeze made [1, 1] and the Concat of
    shape pieces became rank-inconsistent: EfficientNet's SE reshape, Keras 3 export)."""
    from modelconv.ir.builder import GraphBuilder
    from modelconv.passes.constant_folding import FoldConstantsPass

    b = GraphBuilder()
    x = b.add_input("x", np.float32, [2, 6])
    axes = b.const(np.asarray([0], np.int64))
    n = b.Unsqueeze(b.Squeeze(b.const(np.asarray([2], np.int64)), axes), axes)
    shape = b.Concat(n, b.const(np.asarray([3, 2], np.int64)), axis=0)
    b.set_outputs([b.Reshape(x, shape)], ["y"])
    model = b.build()
    FoldConstantsPass()(model)
    (reshape,) = list(model.graph)
    assert reshape.op_type == "Reshape"
    np.testing.assert_array_equal(reshape.inputs[1].const_value.numpy(), [2, 3, 2])


def test_constant_broadcast_is_not_folded_into_a_huge_tensor(tmp_path: Path) -> None:
    """Two small constants that broadcast to 2^26 elements stay an Add node (folding them in
    numpy would allocate 256 MB; a hostile file could ask for far more)."""
    col, row = np.ones((1 << 13, 1), np.float32), np.ones((1, 1 << 13), np.float32)
    body = [_node("p", "Const", [], _attr("dtype", "type", 1), _attr("value", "tensor",
                                                                    _tensor(col))),
            _node("q", "Const", [], _attr("dtype", "type", 1), _attr("value", "tensor",
                                                                    _tensor(row))),
            _node("big", "AddV2", ["p:output:0", "q:output:0"]),
            *_body(relu_inputs=["m:z:0"])]
    fn = _function("fn", ["a"], ["y", "z"], body, {"y": "r:activations:0", "z": "big:z:0"})
    call = _node("call", "PartitionedCall", ["x"], _attr("f", "func", "fn"))
    folder = _write(tmp_path / "sm", [PLACEHOLDER, call], [fn], {"y": "call:0", "z": "call:1"})
    graph = convert_signature(folder, "serving_default")
    assert [n.op_type for n in graph.model.graph if n.op_type == "Add"] == ["Add"]


def test_builder_names_never_collide() -> None:
    """A hint ``w_1`` after two ``w`` (or the other way round) gets a fresh name: two
    initializers with one name used to make the later one replace the first (the unrolled
    LSTM got its input kernel where the recurrent kernel belongs)."""
    from modelconv.ir.builder import GraphBuilder

    b = GraphBuilder()
    names = [b.unique_name(h) for h in ("w", "w_1", "w", "w", "w_1", "w_2")]
    assert len(set(names)) == len(names), names
    assert names[:2] == ["w", "w_1"]
