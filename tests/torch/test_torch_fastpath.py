"""The fast torch route: programs lowered without run_decompositions when every op has a
handler (in-place ops only where lowering them functionally is invisible), the handlers
that route needs, and the ONNX writer that splices weights into the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import onnx_ir as ir  # noqa: E402

from modelconv.exporters.onnx import write_embedded  # noqa: E402
from modelconv.importers.torch.capture import export_module  # noqa: E402
from modelconv.importers.torch.lower import needs_decomposition  # noqa: E402
from tests.torch.test_torch_ops import Fn, run_both  # noqa: E402


def _program(fn: Callable[..., Any], *args: Any) -> Any:
    return export_module(Fn(fn), tuple(args), None)


def _close(module: nn.Module, *inputs: Any, tol: float = 1e-5) -> None:
    got, ref = run_both(module, list(inputs))
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=0, atol=tol)


def _inplace_then_read(x: Any) -> Any:
    y = x * 2
    z = y + 1  # reads y before the mutation: still safe
    y.relu_()
    return y + z


def _view_read_after(x: Any) -> Any:
    y = x * 2
    v = y.view(-1)  # a view taken before the mutation sees it
    y.add_(1)
    return v.sum() + y


def _mutate_input(x: Any) -> Any:
    x.add_(1)
    return x * 2


X = torch.randn(2, 3, 4)


def test_safe_inplace_skips_decomposition() -> None:
    assert not needs_decomposition(_program(_inplace_then_read, X))
    _close(Fn(_inplace_then_read), X)


def test_resnet_style_block_skips_decomposition() -> None:
    block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                          nn.Flatten())
    ep = export_module(block.eval(), (torch.randn(1, 3, 8, 8),), None)
    assert not needs_decomposition(ep)
    _close(block, torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("fn", [_view_read_after, _mutate_input])
def test_observable_mutation_is_decomposed(fn: Callable[..., Any]) -> None:
    assert needs_decomposition(_program(fn, X.clone()))


def test_view_read_after_mutation_stays_correct() -> None:
    _close(Fn(_view_read_after), X, tol=1e-4)


@pytest.mark.parametrize("fn", [
    lambda x: torch.flatten(x, 1, 2),
    lambda x: x.unflatten(2, (2, -1)),
    lambda x: torch.diff(x, dim=1),
    lambda x: torch.diff(x, n=2, dim=-1, prepend=x[..., :1], append=x[..., -1:]),
    lambda x: ((x > 0) & (x < 1)).float(),
    lambda x: x.to(device="cpu", dtype=torch.float64) * 2,
    lambda x: torch.ones(4).to(x) + x,
    lambda x: nn.functional.conv1d(x, torch.ones(2, 3, 2)),
], ids=["flatten", "unflatten", "diff", "diff_n2_pre_app", "and", "to_device",
        "to_other", "conv1d"])
def test_undecomposed_ops(fn: Callable[..., Any]) -> None:
    assert not needs_decomposition(_program(fn, X))
    _close(Fn(fn), X)


class _Flatten(nn.Module):
    def forward(self, x: Any) -> Any:
        return torch.flatten(x, 1) * 2


def test_dynamic_flatten() -> None:
    got, ref = run_both(_Flatten(), [torch.randn(3, 2, 5)], dynamic_batch=True)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=1e-6)


def test_write_embedded_matches_ir_save(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    big = ir.tensor(rng.standard_normal((300, 100)).astype(np.float32), name="big")
    small = ir.tensor(np.arange(6, dtype=np.int64), name="small")
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2, 300]))
    w = ir.Value(name="big", const_value=big, type=ir.TensorType(ir.DataType.FLOAT),
                 shape=ir.Shape([300, 100]))
    s = ir.Value(name="small", const_value=small, type=ir.TensorType(ir.DataType.INT64),
                 shape=ir.Shape([6]))
    mm = ir.node("MatMul", [x, w])
    shape = ir.node("Shape", [s])
    graph = ir.Graph([x], [*mm.outputs, *shape.outputs], nodes=[mm, shape],
                     initializers=[w, s], opset_imports={"": 21}, name="g")
    graph.doc_string = "after the initializers"
    model = ir.Model(graph, ir_version=10, producer_name="test")
    model.metadata_props["k"] = "v"
    ir.save(model, tmp_path / "a.onnx")
    write_embedded(model, tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


# --- the fast capture (one recorded eager forward) and its fallback to torch.export ------

from modelconv.errors import ModelconvError  # noqa: E402
from modelconv.importers.torch import import_torch_module  # noqa: E402
from modelconv.importers.torch.fastcapture import (  # noqa: E402
    CAPTURE_ENV,
    FastCaptureRefused,
    FastProgram,
    fast_capture,
)
from modelconv.options import ConvertOptions  # noqa: E402
from modelconv.verification.runners import OnnxRuntimeRunner  # noqa: E402


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: Any) -> Any:
        y = self.bn(self.conv(x))
        y += x
        return torch.relu_(y)


class _DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.register_buffer("table", torch.arange(3.0))  # a buffer read, never written

    def forward(self, x: Any) -> Any:
        h = self.lin(x)
        return {"logits": h + self.table, "probs": h.softmax(-1)}


class _Const(nn.Module):
    def forward(self, x: Any) -> Any:
        return x * torch.tensor([1.0, 2.0, 3.0, 4.0]) + torch.ones(4)


def _encoder() -> nn.Module:
    return nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True)


def _gpt2_tiny() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50,
                                  n_positions=16, attn_implementation="eager",
                                  use_cache=False, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2Model(cfg)


def _bert_tiny() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32,
                                  max_position_embeddings=16)
    return transformers.BertModel(cfg)


_IDS = torch.tensor([[1, 5, 7, 3, 9, 2]])
FAST_CASES: dict[str, tuple[Callable[[], nn.Module], tuple[Any, ...]]] = {
    "residual_inplace": (_Residual, (torch.randn(1, 3, 6, 6),)),
    "dict_outputs_buffer": (_DictOut, (torch.randn(2, 4),)),
    "python_constants": (_Const, (torch.randn(2, 4),)),
    "transformer_encoder_layer": (_encoder, (torch.randn(2, 5, 8),)),
    "multihead_attention": (lambda: Fn(lambda x, mha: mha(x, x, x, need_weights=False)[0],
                                       mha=nn.MultiheadAttention(8, 2, batch_first=True)),
                            (torch.randn(2, 5, 8),)),
    "gpt2_tiny": (_gpt2_tiny, (_IDS,)),
    "bert_tiny": (_bert_tiny, (_IDS,)),
}


def _capture_with(mode: str, module: nn.Module, inputs: tuple[Any, ...],
                  monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[Any], Any]:
    """(onnxruntime outputs, eager outputs, output names) with the capture forced to mode."""
    monkeypatch.setenv(CAPTURE_ENV, mode)
    sm = import_torch_module(module, ConvertOptions(example_inputs=inputs))
    feeds = [x.numpy() for x in inputs]
    got = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString()).run(feeds)
    return got, sm.make_runner().run(feeds), [v.name for v in sm.model.graph.outputs]


@pytest.mark.parametrize("name", list(FAST_CASES))
def test_fast_and_export_captures_agree(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    build, inputs = FAST_CASES[name]
    torch.manual_seed(0)
    module = build().eval()
    names = [f"x{i}" for i in range(len(inputs))]
    assert isinstance(fast_capture(module, inputs, names), FastProgram)
    fast, ref, fast_names = _capture_with("fast", module, inputs, monkeypatch)
    slow, ref2, slow_names = _capture_with("export", module, inputs, monkeypatch)
    assert fast_names == slow_names
    for f, s, r, r2 in zip(fast, slow, ref, ref2, strict=True):
        np.testing.assert_allclose(r, r2, rtol=0, atol=0)
        np.testing.assert_allclose(f, r, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(s, r, rtol=1e-5, atol=1e-5)


class _Branch(nn.Module):
    def forward(self, x: Any) -> Any:
        return x * 2 if x.sum() > 0 else x - 1


class _ItemSize(nn.Module):
    def forward(self, x: Any) -> Any:
        return x[: int(x.shape[0] * 0 + (x > 0).sum().item()) or 1]


class _ToList(nn.Module):
    def forward(self, x: Any) -> Any:
        return x * float(x.detach().reshape(-1).tolist()[0] > 0)


class _NumPy(nn.Module):
    def forward(self, x: Any) -> Any:
        return x * float(x.detach().numpy().max())


class _Counter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, x: Any) -> Any:
        self.calls.add_(1)
        return x + self.calls


class _MutateInput(nn.Module):
    def forward(self, x: Any) -> Any:
        x.mul_(2)
        return x + 1


class _Mask(nn.Module):
    def forward(self, x: Any) -> Any:
        return x[x > 0].sum(0, keepdim=True)


class _ViewWrite(nn.Module):
    def forward(self, x: Any) -> Any:
        y = x * 1
        y[:, 0] = 5.0  # a write through a view: the base changes too
        return y


REFUSED = {
    "data_dependent_branch": (_Branch, "tensor values"),
    "item_as_size": (_ItemSize, "reads tensor values"),
    "tolist": (_ToList, "tolist"),
    "numpy": (_NumPy, "numpy"),
    "buffer_mutation": (_Counter, "writes to an input, parameter, buffer"),
    "input_mutation": (_MutateInput, "writes to an input, parameter, buffer"),
    "bool_mask_index": (_Mask, "depends on the data"),
    "write_through_view": (_ViewWrite, "no functional lowering"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_fast_capture_refuses_what_it_cannot_vouch_for(name: str) -> None:
    build, reason = REFUSED[name]
    module = build().eval()
    x = torch.randn(3, 4)
    before = [t.clone() for t in module.buffers()]
    kept = x.clone()
    with pytest.raises(FastCaptureRefused, match=reason):
        fast_capture(module, (x,), ["x"])
    # refused before the write ran: buffers and the example input are untouched
    assert all(torch.equal(a, b) for a, b in zip(before, module.buffers(), strict=True))
    assert torch.equal(x, kept)


def test_refused_models_fall_back_to_export(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(3, 4)
    got, ref, _ = _capture_with("auto", _ViewWrite().eval(), (x,), monkeypatch)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, atol=1e-6)
    # what torch.export cannot capture either ends in torch.export's error, not a graph
    with pytest.raises(ModelconvError, match=r"torch\.export could not capture"):
        import_torch_module(_Branch(), ConvertOptions(example_inputs=(x,)))


def test_forced_fast_capture_names_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CAPTURE_ENV, "fast")
    with pytest.raises(FastCaptureRefused, match="tensor values"):
        import_torch_module(_Branch(), ConvertOptions(example_inputs=(torch.randn(3, 4),)))


def test_dynamic_dims_use_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CAPTURE_ENV, "fast")
    with pytest.raises(FastCaptureRefused, match="dynamic dims"):
        import_torch_module(_Flatten(), ConvertOptions(example_inputs=(torch.randn(3, 2, 5),),
                                                       dynamic_batch=True))
    monkeypatch.setenv(CAPTURE_ENV, "auto")
    got, ref = run_both(_Flatten(), [torch.randn(3, 2, 5)], dynamic_batch=True)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=1e-6)


def test_import_reports_its_steps() -> None:
    calls: list[tuple[str, float]] = []
    import_torch_module(_Residual().eval(), ConvertOptions(
        example_inputs=(torch.randn(1, 3, 6, 6),),
        progress=lambda stage, f: calls.append((stage, f))))
    for step in ("import:capture", "import:lower"):
        assert (step, 0.0) in calls and (step, 1.0) in calls, calls


def test_fast_program_module_runs_the_recording() -> None:
    module = _Residual().eval()
    x = torch.randn(1, 3, 6, 6)
    program = fast_capture(module, (x,), ["x"])
    with torch.no_grad():  # what the divergence search runs for FX-node intermediates
        np.testing.assert_allclose(program.module()(x.clone())[0], module(x.clone()),
                                   rtol=1e-6, atol=1e-6)


def test_safe_softmax_zeroes_fully_masked_rows() -> None:
    # the op SDPA's math path uses (what a meta-device recording of attention holds)
    def fn(x: Any) -> Any:
        masked = torch.cat([torch.full_like(x[:1], float("-inf")), x[1:]])
        return torch.ops.aten._safe_softmax.default(masked, -1)

    got, ref = run_both(Fn(fn), [torch.randn(3, 5)])
    assert np.all(ref[0][0] == 0)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=1e-6)


MATMULS: dict[str, tuple[Callable[..., Any], tuple[tuple[int, ...], ...]]] = {
    "bmm_4d": (lambda a, b: a @ b, ((2, 3, 4, 5), (2, 3, 5, 6))),
    "broadcast_4d_3d": (lambda a, b: torch.matmul(a, b), ((2, 3, 4, 5), (3, 5, 6))),
    "mm_3d_2d": (lambda a, b: a.matmul(b), ((2, 4, 5), (5, 6))),
    "vector_matrix": (lambda a, b: a @ b, ((5,), (2, 5, 6))),
    "matrix_vector": (lambda a, b: a @ b, ((2, 4, 5), (5,))),
}


@pytest.mark.parametrize("name", list(MATMULS))
def test_fast_capture_records_matmul_whole(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # as torch.export does: not torch's expand + view + bmm/mm + _unsafe_view decomposition
    fn, shapes = MATMULS[name]
    torch.manual_seed(0)
    inputs = tuple(torch.randn(s) for s in shapes)
    program = fast_capture(Fn(fn), inputs, ["a", "b"])
    ops = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert ops == ["aten.matmul.default"]
    got, ref, _ = _capture_with("fast", Fn(fn), inputs, monkeypatch)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, atol=1e-6)


SDPAS: dict[str, Callable[..., Any]] = {
    "plain": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
    "causal_scaled": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                    scale=0.3),
    "bool_mask": lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=torch.ones(4, 6, dtype=torch.bool).tril()),
    "gqa": lambda q, k, v: F.scaled_dot_product_attention(q, k[:, :1], v[:, :1],
                                                          enable_gqa=True),
}


@pytest.mark.parametrize("name", list(SDPAS))
def test_fast_capture_records_sdpa_whole(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As torch.export does: one aten.scaled_dot_product_attention, not the math path
    (whose _safe_softmax guard costs four ops a head even without a mask)."""
    fn = SDPAS[name]
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    program = fast_capture(Fn(fn), (q, k, v), ["q", "k", "v"])
    ops = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert "aten.scaled_dot_product_attention.default" in ops and \
        "aten._safe_softmax.default" not in ops, ops
    got, ref, _ = _capture_with("fast", Fn(fn), (q, k, v), monkeypatch)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)
