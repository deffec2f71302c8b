"""ONNX sources with embedded weights: the weights are mapped from the file in place
(modelconv/importers/onnx/hollow.py), never parsed into memory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelconv
from modelconv.errors import ModelLoadError
from modelconv.importers.onnx import hollow
from tests.scale.helpers import anonymous_growth, initializer_homes


def _mlp(path: Path, width: int, layers: int) -> int:
    """x -> (MatMul W_i, Add b_i, Relu) x layers, weights embedded; returns weight bytes."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        b = rng.standard_normal(width).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [f"y{i}"])]
        prev = f"y{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, width])], [helper.make_tensor_value_info(
            prev, TensorProto.FLOAT, [1, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return sum(t.nbytes for t in (numpy_helper.to_array(i) for i in inits))


def test_embedded_weights_are_views_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    _mlp(path, 512, 4)
    source = modelconv.load(path)
    mapped, _, other = initializer_homes(source.model, path, min_size=1 << 12)
    assert other == 0 and mapped == 4, (mapped, other)


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_mapped_and_parsed_sources_give_the_same_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    src = tmp_path / "m.onnx"
    _mlp(src, 512, 4)
    outs = []
    for files_from in (0, 1 << 62):  # mapped, then the whole-file parse
        monkeypatch.setattr(hollow, "HOLLOW_FILES_FROM", files_from)
        dst = tmp_path / f"{files_from}.{target}"
        result = modelconv.convert(src, dst)
        assert result.verified
        outs.append(dst.read_bytes())
    assert outs[0] == outs[1]


def test_hollow_model_references_the_file_itself(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    _mlp(path, 512, 2)
    proto = hollow.hollow_model(path)
    assert proto is not None
    assert proto.ByteSize() < 8192  # the graph and the two 2 KiB biases
    data = path.read_bytes()
    for tensor in proto.graph.initializer:
        if tensor.name.startswith("w"):
            info = {e.key: e.value for e in tensor.external_data}
            assert info["location"] == "m.onnx"
            start, length = int(info["offset"]), int(info["length"])
            want = numpy_helper.to_array(onnx.load(path).graph.initializer[
                [t.name for t in onnx.load(path).graph.initializer].index(tensor.name)])
            assert data[start:start + length] == want.tobytes()
        else:  # a 2 KiB bias stays embedded
            assert tensor.raw_data and tensor.data_location == TensorProto.DEFAULT


def test_truncated_embedded_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    _mlp(path, 512, 4)
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        modelconv.convert(path, tmp_path / "t.onnx")


def test_hard_linked_model_is_parsed_whole_and_converts(tmp_path: Path) -> None:
    """A second name for the file: the self-reference would be refused as a hard link, so
    the ordinary parse is used."""
    path = tmp_path / "m.onnx"
    _mlp(path, 512, 2)
    os.link(path, tmp_path / "alias.onnx")
    assert modelconv.convert(path, tmp_path / "out.onnx").verified


@pytest.mark.models
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_embedded_onnx_conversion_holds_no_weight_sized_anonymous_memory(
        tmp_path: Path, target: str) -> None:
    big, warm = tmp_path / "big.onnx", tmp_path / "warm.onnx"
    weights = _mlp(big, 2048, 10)  # 160 MiB
    _mlp(warm, 8, 2)
    grown = anonymous_growth(big, tmp_path / f"m.{target}", "-", warm)
    assert grown < 0.3 * weights, (grown / 2**20, weights / 2**20)


def _conv_bn(path: Path, channels: int) -> None:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((channels, channels, 3, 3)) * 0.05).astype(np.float32)
    params = [rng.uniform(0.5, 1.5, channels), rng.standard_normal(channels) * 0.1,
              rng.standard_normal(channels) * 0.1, rng.uniform(0.5, 1.5, channels)]
    names = ["gamma", "beta", "mean", "var"]
    inits = [numpy_helper.from_array(w, "w")] + [
        numpy_helper.from_array(p.astype(np.float32), n) for p, n in zip(params, names,
                                                                          strict=True)]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", *names], ["bn"]),
         helper.make_node("Mul", ["bn", "k"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 6, 6])],
        [*inits, numpy_helper.from_array(
            rng.uniform(0.5, 2, (1, channels, 1, 1)).astype(np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_folded_batchnorm_weights_are_computed_when_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Conv -> BatchNormalization -> per-channel Mul fold into the conv weight; a large
    folded weight is a lazy tensor (computed as it is written), with the eager bytes."""
    import onnx_ir as ir

    from modelconv.passes import _edit, cleanup

    src = tmp_path / "cbn.onnx"
    _conv_bn(src, 128)  # 147,456-element kernel
    model = modelconv.load(src).model
    cleanup(model)
    ops = [n.op_type for n in model.graph]
    assert ops == ["Conv"], ops
    kernel = model.graph.node(0).inputs[1].const_value
    assert isinstance(kernel, ir.LazyTensor)
    outs = []
    for lazy_from in (0, 1 << 40):
        monkeypatch.setattr(_edit, "LAZY_DERIVED_FROM", lazy_from)
        dst = tmp_path / f"{lazy_from}.onnx"
        assert modelconv.convert(src, dst).verified
        outs.append(dst.read_bytes())
    assert outs[0] == outs[1]
