"""Torch sources: input/output names kept, named dynamic dims with bounds, torch's
constraint fixes shown in modelconv's terms (issue 18 items 2 and 3)."""

from __future__ import annotations

import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import modelconv
from modelconv.errors import OptionsError, ShapeError

Pair = namedtuple("Pair", ["scores", "features"])


class _DictOut(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, image: torch.Tensor, scale: torch.Tensor) -> dict[str, object]:
        h = self.fc(image) * scale
        return {"logits": h, "extra": {"probs": h.softmax(-1)}, "hidden": (h, h + 1)}


class _NamedTupleOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> Pair:
        return Pair(x.sum(-1), x * 2)


class _TupleOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x + 1, x - 1


class _Positions(torch.nn.Module):
    """BERT-like: ids + type ids + a position table of 16 rows, so seq <= 16."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = torch.nn.Embedding(50, 8)
        self.typ = torch.nn.Embedding(2, 8)
        self.pos = torch.nn.Embedding(16, 8)
        self.register_buffer("position_ids", torch.arange(16).unsqueeze(0), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        pos = self.position_ids[:, : input_ids.shape[1]]  # as BERT: a guard seq <= 16
        h = self.tok(input_ids) + self.pos(pos)
        if token_type_ids is not None:
            h = h + self.typ(token_type_ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1)
        return {"last_hidden_state": h}


def _names(path: Path) -> tuple[list[str], list[str]]:
    m = onnx.load(path)
    return [i.name for i in m.graph.input], [o.name for o in m.graph.output]


def _dims(path: Path) -> dict[str, list[object]]:
    sess = ort.InferenceSession(str(path))
    return {i.name: i.shape for i in sess.get_inputs()}


def test_output_names_follow_the_returned_structure(tmp_path: Path) -> None:
    out = tmp_path / "d.onnx"
    result = modelconv.convert(_DictOut(), out, example_inputs=(torch.randn(2, 4),
                                                                torch.tensor(2.0)))
    assert result.verified
    assert _names(out) == (["image", "scale"],
                           ["logits", "extra.probs", "hidden.0", "hidden.1"])
    out = tmp_path / "n.onnx"
    modelconv.convert(_NamedTupleOut(), out, example_inputs=(torch.randn(2, 4),))
    assert _names(out)[1] == ["scores", "features"]
    out = tmp_path / "t.onnx"
    modelconv.convert(_TupleOut(), out, example_inputs=(torch.randn(2, 4),))
    assert _names(out)[1] == ["output_0", "output_1"]


def test_output_names_override(tmp_path: Path) -> None:
    out = tmp_path / "t.onnx"
    modelconv.convert(_TupleOut(), out, example_inputs=(torch.randn(2, 4),),
                      output_names=["plus", "minus"])
    assert _names(out) == (["x"], ["plus", "minus"])
    with pytest.raises(ShapeError, match="2 output"):
        modelconv.convert(_TupleOut(), tmp_path / "u.onnx", example_inputs=(torch.randn(2, 4),),
                          output_names=["only_one"])


def test_input_names_bind_forward_parameters_by_keyword(tmp_path: Path) -> None:
    """ids + type ids without the attention mask in between: bound by name, not position."""
    out = tmp_path / "p.onnx"
    result = modelconv.convert(_Positions(), out, input_shapes=[(2, 5), (2, 5)],
                               input_dtypes=["int64", "int64"],
                               input_names=["input_ids", "token_type_ids"])
    assert result.verified
    assert _names(out) == (["input_ids", "token_type_ids"], ["last_hidden_state"])
    # a dict of example inputs binds the same way (it used to shift token_type_ids into
    # the attention_mask slot)
    ids = torch.randint(0, 50, (2, 5))
    out2 = tmp_path / "q.onnx"
    modelconv.convert(_Positions(), out2,
                      example_inputs={"input_ids": ids, "token_type_ids": torch.ones_like(ids)})
    assert _names(out2)[0] == ["input_ids", "token_type_ids"]
    with pytest.raises(ShapeError, match="not parameters of forward"):
        modelconv.convert(_Positions(), tmp_path / "r.onnx", input_shapes=[(2, 5)],
                          input_dtypes=["int64"], input_names=["ids"])


def test_dynamic_batch_and_seq_take_the_models_bound(tmp_path: Path) -> None:
    out = tmp_path / "dyn.onnx"
    dims = {"input_ids": {0: "batch", 1: "seq"}, "token_type_ids": {0: "batch", 1: "seq"}}
    result = modelconv.convert(_Positions(), out, input_shapes=[(2, 5), (2, 5)],
                               input_dtypes=["int64", "int64"],
                               input_names=["input_ids", "token_type_ids"], dynamic_dims=dims)
    assert result.verified
    assert any("'seq'" in w and "..16" in w and "--dynamic-dim" in w for w in result.warnings)
    assert _dims(out) == {"input_ids": ["batch", "seq"], "token_type_ids": ["batch", "seq"]}
    sess = ort.InferenceSession(str(out))
    for batch, seq in [(1, 3), (3, 11), (2, 16)]:
        ids = np.random.default_rng(seq).integers(0, 50, (batch, seq))
        got = sess.run(None, {"input_ids": ids, "token_type_ids": np.zeros_like(ids)})[0]
        assert got.shape == (batch, seq, 8)


def test_bounds_outside_the_model_are_refused_in_modelconv_terms(tmp_path: Path) -> None:
    dims = {"input_ids": {1: "seq"}, "token_type_ids": {1: "seq"}}
    with pytest.raises(ShapeError, match=r"dim 'seq' \(input_ids:1, token_type_ids:1\) must "
                                         r"lie in"):
        modelconv.convert(_Positions(), tmp_path / "x.onnx", input_shapes=[(2, 5), (2, 5)],
                          input_dtypes=["int64", "int64"],
                          input_names=["input_ids", "token_type_ids"], dynamic_dims=dims,
                          dim_ranges={"seq": (2, 64)})


def test_untied_dims_that_must_match_are_explained(tmp_path: Path) -> None:
    dims = {"input_ids": {1: "seq"}, "token_type_ids": {1: "seq2"}}
    with pytest.raises(ShapeError) as info:
        modelconv.convert(_Positions(), tmp_path / "x.onnx", input_shapes=[(2, 5), (2, 5)],
                          input_dtypes=["int64", "int64"],
                          input_names=["input_ids", "token_type_ids"], dynamic_dims=dims)
    text = str(info.value)
    assert "same NAME" in text and "seq" in text
    # only one of two dims that must match made dynamic
    with pytest.raises(ShapeError, match="fixed to 5 by the model"):
        modelconv.convert(_Positions(), tmp_path / "y.onnx", input_shapes=[(2, 5), (2, 5)],
                          input_dtypes=["int64", "int64"],
                          input_names=["input_ids", "token_type_ids"],
                          dynamic_dims={"input_ids": {1: "seq"}})


def test_torchscript_inputs_keep_their_names(tmp_path: Path) -> None:
    ts_path = tmp_path / "m.pt"
    torch.jit.script(_TupleOut()).save(str(ts_path))
    out = tmp_path / "ts.onnx"
    modelconv.convert(ts_path, out, trust_code=True, input_shapes=[(2, 4)])
    assert _names(out)[0] == ["x"]


def test_dynamic_flags_with_a_pt2_are_refused(tmp_path: Path) -> None:
    pt2 = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(_TupleOut(), (torch.randn(2, 4),)), str(pt2))
    with pytest.raises(OptionsError, match="keeps the dynamic dims"):
        modelconv.convert(pt2, tmp_path / "m.onnx", dynamic_batch=True)


def test_cli_dynamic_dim_and_names_on_a_bert_from_safetensors(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    factory = tmp_path / "bert_factory.py"
    factory.write_text(
        "import torch\nfrom transformers import BertConfig, BertModel\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,\n"
        "                     num_attention_heads=2, intermediate_size=32,\n"
        "                     max_position_embeddings=32)\n"
        "    return BertModel(cfg).eval()\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import bert_factory, "
            "safetensors.torch as st; st.save_model(bert_factory.build(), sys.argv[2])")
    weights = tmp_path / "bert.safetensors"
    subprocess.run([sys.executable, "-c", code, str(tmp_path), str(weights)], check=True)
    out = tmp_path / "bert.onnx"
    cmd = [sys.executable, "-m", "modelconv", "convert", str(weights), str(out),
           "--model", "bert_factory:build", "--input-shape", "2,8", "--input-shape", "2,8",
           "--input-dtype", "int64", "--input-dtype", "int64",
           "--input-names", "input_ids,attention_mask",
           "--dynamic-dim", "input_ids:0=batch", "--dynamic-dim", "input_ids:1=seq:2:32",
           "--dynamic-dim", "attention_mask:0=batch", "--dynamic-dim", "attention_mask:1=seq"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert _names(out) == (["input_ids", "attention_mask"],
                           ["last_hidden_state", "pooler_output"])
    assert _dims(out) == {"input_ids": ["batch", "seq"], "attention_mask": ["batch", "seq"]}
    sys.path.insert(0, str(tmp_path))
    try:
        import bert_factory
    finally:
        sys.path.remove(str(tmp_path))
    model = bert_factory.build()
    sess = ort.InferenceSession(str(out))
    for batch, seq in [(1, 4), (3, 13), (2, 32)]:
        ids = np.random.default_rng(seq).integers(0, 64, (batch, seq))
        mask = np.ones_like(ids)
        mask[:, -1] = 0
        got = sess.run(None, {"input_ids": ids, "attention_mask": mask})
        with torch.no_grad():
            ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        np.testing.assert_allclose(got[0], ref.last_hidden_state.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got[1], ref.pooler_output.numpy(), rtol=1e-4, atol=1e-5)


def test_cli_rejects_a_malformed_dynamic_dim() -> None:
    proc = subprocess.run([sys.executable, "-m", "modelconv", "convert", "a.pt", "b.onnx",
                           "--dynamic-dim", "input_ids=seq"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "INPUT:AXIS=NAME" in proc.stderr
