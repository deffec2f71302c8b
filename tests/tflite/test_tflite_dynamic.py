"""TFLite files keep dynamic dims (issue 17 item 3): shapes derived from a symbolic batch or
sequence follow at run time (run-time RESHAPE targets, -1 in shape_signature), and the file
runs in LiteRT at other sizes than the ones it was lowered at."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import modelconv
from modelconv.exporters.tflite.dynamic import generalize
from modelconv.exporters.tflite.graph import Op, TflGraph
from modelconv.verification.runners_litert import LiteRTRunner
from tests.paths import ROOT

FIXTURES = ROOT / "fixtures"


def _signatures(path: Path) -> dict[str, list[int]]:
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    sub = model.subgraphs[0]
    return {sub.tensors[i].name.decode(): [int(d) for d in sub.tensors[i].shapeSignature]
            for i in (*sub.inputs, *sub.outputs) if sub.tensors[i].shapeSignature is not None}


def test_cnn_with_a_symbolic_batch_runs_at_batch_1_2_and_5(tmp_path: Path) -> None:
    import onnxruntime as ort

    src = FIXTURES / "onnx" / "small_cnn.onnx"
    out = tmp_path / "cnn.tflite"
    result = modelconv.convert(src, out, overwrite=True)
    assert result.verified
    assert not any("fails with batch 2" in n for n in result.report.notes)  # type: ignore[union-attr]
    sigs = _signatures(out)
    assert all(sig[0] == -1 for sig in sigs.values()), sigs
    sess = ort.InferenceSession(str(src))
    name = sess.get_inputs()[0].name
    shape = [d for d in sess.get_inputs()[0].shape[1:]]
    runner = LiteRTRunner(out)
    for batch in (1, 2, 5):
        x = np.random.default_rng(batch).random((batch, *shape), np.float32)
        ref = sess.run(None, {name: x})
        got = runner.run([x])
        for r, g in zip(ref, got, strict=True):
            assert g.shape == r.shape
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


class _LayerNorm(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w, self.b = torch.nn.Parameter(torch.rand(dim) + 0.5), torch.nn.Parameter(
            torch.rand(dim) - 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.w + self.b


class _Layer(torch.nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.ff1, self.ff2 = torch.nn.Linear(dim, 2 * dim), torch.nn.Linear(2 * dim, dim)
        self.n1, self.n2 = _LayerNorm(dim), _LayerNorm(dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (t.reshape(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / (d // self.heads) ** 0.5 + bias
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, s, d)
        x = self.n1(x + self.proj(y))
        return self.n2(x + self.ff2(torch.tanh(self.ff1(x))))


class _Encoder(torch.nn.Module):
    """BERT-like: token + position embeddings, the attention bias built from the mask at run
    time, positions from the mask's cumulative sum."""

    def __init__(self, vocab: int = 50, dim: int = 16, heads: int = 2, layers: int = 2) -> None:
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, dim)
        self.pos = torch.nn.Embedding(64, dim)
        self.layers = torch.nn.ModuleList(_Layer(dim, heads) for _ in range(layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ones = attention_mask * 0 + 1
        positions = torch.cumsum(ones, dim=1) - 1
        x = self.tok(input_ids) + self.pos(positions)
        bias = (1.0 - attention_mask[:, None, None, :].float()) * -1e4
        for layer in self.layers:
            x = layer(x, bias)
        return x


def test_bert_like_encoder_runs_at_three_batch_and_sequence_sizes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Encoder().eval()
    ids = torch.randint(0, 50, (2, 6))
    dims = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    out = tmp_path / "enc.tflite"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = modelconv.convert(model, out, example_inputs={
            "input_ids": ids, "attention_mask": torch.ones_like(ids)}, dynamic_dims=dims)
    assert result.verified
    assert not [w for w in caught if "runs at these sizes only" in str(w.message)]
    sigs = _signatures(out)
    assert sigs["input_ids"] == [-1, -1] and sigs["attention_mask"] == [-1, -1]
    runner = LiteRTRunner(out)
    names = [spec.name for spec in runner.input_specs()]
    for batch, seq in [(1, 3), (3, 11), (2, 17)]:
        rng = np.random.default_rng(seq)
        x = rng.integers(0, 50, (batch, seq))
        mask = np.ones((batch, seq), np.int64)
        mask[0, seq // 2:] = 0
        with torch.no_grad():
            ref = model(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
        feeds = {"input_ids": x, "attention_mask": mask}
        got = runner.run([feeds[n] for n in names])[0]
        assert got.shape == (batch, seq, 16)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def _graph(target: list[int], in_shape: list[int], out_shape: list[int]) -> TflGraph:
    g = TflGraph()
    x = g.add_tensor("x", np.float32, in_shape)
    y = g.add_tensor("y", np.float32, out_shape)
    g.ops.append(Op("RESHAPE", [x, g.add_const(np.asarray(target, np.int32), "t")], [y]))
    g.inputs, g.outputs, g.input_names, g.output_names = [x], [y], ["x"], ["y"]
    return g


def test_reshape_targets_with_two_dynamic_entries_are_read_at_run_time() -> None:
    a = _graph([1, 8, 2, 4], [1, 8, 8], [1, 8, 2, 4])
    b = _graph([6, 15, 2, 4], [6, 15, 8], [6, 15, 2, 4])
    assert generalize(a, b) is None
    assert [op.code for op in a.ops] == ["SHAPE", "GATHER", "GATHER", "CONCATENATION", "RESHAPE"]
    assert a.tensors[a.outputs[0]].shape_signature == [-1, -1, 2, 4]
    one = _graph([1, 64], [1, 8, 8], [1, 64])
    assert generalize(one, _graph([6, 64], [6, 8, 8], [6, 64])) is None
    target = one.tensors[one.ops[0].inputs[1]].data
    assert target is not None and target.tolist() == [-1, 64]


def test_a_shape_no_run_time_value_explains_leaves_the_file_static() -> None:
    a = _graph([1, 8, 2, 4], [8, 8], [1, 8, 2, 4])  # [batch * seq, 8] -> [batch, seq, 2, 4]
    b = _graph([6, 15, 2, 4], [90, 8], [6, 15, 2, 4])
    reason = generalize(a, b)
    assert reason is not None and "follow the dynamic dims" in reason
    assert [op.code for op in a.ops] == ["RESHAPE"]
    assert a.tensors[a.outputs[0]].shape_signature is None


@pytest.mark.parametrize("code", ["TILE"])
def test_other_constants_that_follow_a_dim_are_refused(code: str) -> None:
    def g(n: int) -> TflGraph:
        graph = TflGraph()
        x = graph.add_tensor("x", np.float32, [n, 4])
        y = graph.add_tensor("y", np.float32, [n, 4 * n])
        graph.ops.append(Op(code, [x, graph.add_const(np.asarray([1, n], np.int32), "m")], [y]))
        graph.inputs, graph.outputs = [x], [y]
        return graph

    reason = generalize(g(1), g(6))
    assert reason is not None and code in reason


def test_a_tflite_declaring_a_dynamic_batch_it_cannot_run_fails_verification(
        tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from modelconv.errors import VerificationError
    from modelconv.exporters.tflite.writer import serialize

    src = tmp_path / "flat.onnx"
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    good = tmp_path / "good.tflite"
    modelconv.convert(src, good)
    assert modelconv.verify(src, good).passed
    bad = _graph([1, 8], [1, 2, 4], [1, 8])  # what the exporter wrote before: [1, 8] baked
    bad.tensors[bad.inputs[0]].shape_signature = [-1, 2, 4]
    (tmp_path / "bad.tflite").write_bytes(serialize(bad))
    with pytest.raises(VerificationError, match="declares a dynamic batch but fails with batch 2"):
        modelconv.verify(src, tmp_path / "bad.tflite")
