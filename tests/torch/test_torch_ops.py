"""Per-op table: each case is exported through the torch importer and run with onnxruntime,
then compared with torch eager."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import onnx_ir as ir  # noqa: E402

from modelconv.importers.torch import import_torch_module  # noqa: E402
from modelconv.options import ConvertOptions  # noqa: E402
from modelconv.verification.runners import OnnxRuntimeRunner  # noqa: E402


class Fn(nn.Module):
    """Wraps a function (plus optional submodules) as a module."""

    def __init__(self, fn: Callable[..., Any], **mods: nn.Module):
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleDict(mods)

    def forward(self, *xs: Any) -> Any:
        return self.fn(*xs, **dict(self.mods.items())) if len(self.mods) else self.fn(*xs)


@dataclass
class Case:
    """One row of the table: a module, its inputs (shape, dtype), tolerance."""

    id: str
    module: Callable[[], nn.Module]
    inputs: list[tuple[tuple[int, ...], str]] = field(default_factory=lambda: [((2, 3, 8, 8), "f")])
    tol: float = 1e-5
    low: int = 0
    high: int = 10


def _mod(m: nn.Module) -> Callable[[], nn.Module]:
    return lambda: m


def _fn(f: Callable[..., Any]) -> Callable[[], nn.Module]:
    return lambda: Fn(f)


def _swin_mask() -> torch.Tensor:
    mask = torch.zeros(1, 8, 8, 1)
    count = 0
    for h in (slice(0, -4), slice(-4, -2), slice(-2, None)):
        for w in (slice(0, -4), slice(-4, -2), slice(-2, None)):
            mask[:, h, w, :] = count
            count += 1
    return mask.permute(0, 3, 1, 2)


def _slice_assign(a: torch.Tensor) -> torch.Tensor:
    y = a * 2
    y[:, 1:3, 2:] = a[:, :2, :4] + 1
    return y


def _slice_assign_step(a: torch.Tensor) -> torch.Tensor:
    y = a.clone()
    y[:, :, ::2] = 0.5
    y[:, 1::2, 1:5:3] = a[:, ::2, :2]
    return y


def _select_assign(a: torch.Tensor) -> torch.Tensor:
    y = a + 0
    y[:, -1] = a[:, 0] * 3
    y[1, :, 2] = 7.0
    return y


def _copy_into(a: torch.Tensor) -> torch.Tensor:
    y = torch.empty(2, 4, 6)
    y.copy_(a[:1, :1])
    return y + a


def _fill_slice(a: torch.Tensor) -> torch.Tensor:
    y = a.clone()
    y[:, 2:].fill_(-1.0)
    return y


def _index_put_int(a: torch.Tensor) -> torch.Tensor:
    y = a.clone()
    y[torch.tensor([1, 0]), torch.tensor([3, -1])] = a[0, :2] * 10
    return y


def _index_put_inner(a: torch.Tensor) -> torch.Tensor:
    y = a.clone()
    y[:, torch.tensor([0, 2]), torch.tensor([1, 4])] = torch.tensor([5.0, 6.0])
    y[..., torch.tensor([5])] = 0.0
    return y


def _index_put_acc(a: torch.Tensor) -> torch.Tensor:
    return a.index_put((torch.tensor([0, 1, 0]), torch.tensor([2, 2, 2])), a[1, :3] + 1,
                       accumulate=True)


def _index_put_mask(a: torch.Tensor) -> torch.Tensor:
    y = a.clone()
    y[a > 0.5] = 0.25
    return y


def _index_put_mask_row(a: torch.Tensor) -> torch.Tensor:
    y = a.clone()
    y[a[..., 0] > 0] = torch.arange(6.0)
    return y


def _scatters(a: torch.Tensor) -> tuple[torch.Tensor, ...]:
    idx = torch.tensor([[[0, 3, 5], [1, 1, 2], [4, 0, 3], [2, 5, 1]]] * 2)
    src = a[..., :3] * 2
    return (a.scatter(2, idx, src), a.scatter(2, idx, 1.5), a.scatter_add(2, idx, src),
            a.scatter_reduce(2, idx, src, "amax"), a.scatter_reduce(2, idx, src, "prod"),
            a.scatter(2, idx[:, :3, :2], a * 3))


V = [((2, 5), "f")]
T3 = [((2, 4, 6), "f")]
TWO = [((2, 4, 6), "f"), ((2, 4, 6), "f")]
SEQ = [((2, 5, 4), "f")]

CASES = [
    # conv / pool
    Case("conv2d", _mod(nn.Conv2d(3, 4, 3, padding=1))),
    Case("conv2d_stride_dil_groups", _mod(nn.Conv2d(3, 6, 3, stride=2, dilation=2, groups=3))),
    Case("conv2d_same", _mod(nn.Conv2d(3, 4, 3, padding="same", bias=False))),
    Case("conv1d", _mod(nn.Conv1d(4, 5, 3, padding=2)), T3),
    Case("conv3d", _mod(nn.Conv3d(2, 3, 3)), [((1, 2, 5, 6, 6), "f")]),
    Case("conv_transpose2d", _mod(nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1,
                                                     output_padding=1))),
    Case("depthwise", _mod(nn.Conv2d(3, 3, 3, groups=3))),
    Case("max_pool2d", _mod(nn.MaxPool2d(3, 2, 1))),
    Case("max_pool2d_ceil", _mod(nn.MaxPool2d(2, ceil_mode=True)), [((1, 2, 7, 7), "f")]),
    Case("max_pool1d", _mod(nn.MaxPool1d(2)), T3),
    Case("avg_pool2d", _mod(nn.AvgPool2d(2))),
    Case("avg_pool2d_pad", _mod(nn.AvgPool2d(3, 1, 1, count_include_pad=False))),
    Case("adaptive_avg_1", _mod(nn.AdaptiveAvgPool2d(1))),
    Case("adaptive_avg_2", _mod(nn.AdaptiveAvgPool2d((2, 4)))),
    Case("adaptive_max_1", _mod(nn.AdaptiveMaxPool2d(1))),
    # uneven windows (8 -> 3: sizes 3, 4, 3, overlapping), upsampling (8 -> 12: repeats),
    # mixed even/uneven axes, 1-D and 3-D, average and max
    Case("adaptive_avg_uneven", _mod(nn.AdaptiveAvgPool2d((3, 5)))),
    Case("adaptive_avg_upsample", _mod(nn.AdaptiveAvgPool2d((12, 4)))),
    Case("adaptive_max_uneven", _mod(nn.AdaptiveMaxPool2d((3, 12)))),
    Case("adaptive_max_even", _mod(nn.AdaptiveMaxPool2d((4, 2)))),
    Case("adaptive_avg1d_uneven", _mod(nn.AdaptiveAvgPool1d(4)), [((2, 4, 7), "f")]),
    Case("adaptive_max1d_uneven", _mod(nn.AdaptiveMaxPool1d(5)), [((2, 4, 7), "f")]),
    Case("adaptive_avg3d_uneven", _mod(nn.AdaptiveAvgPool3d((2, 3, 4))),
         [((1, 2, 5, 7, 4), "f")]),
    Case("adaptive_max3d_uneven", _mod(nn.AdaptiveMaxPool3d((3, 2, 5))),
         [((1, 2, 5, 7, 4), "f")]),
    Case("pad_const", _fn(lambda x: F.pad(x, (1, 2, 0, 1), value=0.5))),
    Case("pad_reflect", _fn(lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"))),
    Case("pad_replicate", _fn(lambda x: F.pad(x, (1, 2, 2, 1), mode="replicate"))),
    Case("upsample_nearest", _mod(nn.Upsample(scale_factor=2))),
    Case("upsample_bilinear", _mod(nn.Upsample(scale_factor=2, mode="bilinear"))),
    Case("upsample_bilinear_ac", _mod(nn.Upsample(size=(5, 7), mode="bilinear",
                                                  align_corners=True))),
    Case("pixel_shuffle", _mod(nn.PixelShuffle(2)), [((1, 8, 3, 3), "f")]),
    # linear / matmul
    Case("linear2d", _mod(nn.Linear(5, 3)), V),
    Case("linear3d", _mod(nn.Linear(6, 3)), T3),
    Case("linear_nobias", _mod(nn.Linear(6, 3, bias=False)), T3),
    Case("matmul", _fn(lambda a, b: a @ b.transpose(1, 2)), TWO),
    Case("bmm", _fn(torch.bmm), [((2, 3, 4), "f"), ((2, 4, 5), "f")]),
    Case("einsum", _fn(lambda a, b: torch.einsum("bij,bkj->bik", a, b)), TWO),
    Case("baddbmm", _fn(lambda a, b: torch.baddbmm(a, a, b, beta=0.5, alpha=2.0)),
         [((2, 3, 3), "f"), ((2, 3, 3), "f")]),
    # norm
    Case("batch_norm", lambda: _bn()),
    Case("batch_norm1d", lambda: _bn1d(), [((4, 6), "f")]),
    Case("layer_norm", _mod(nn.LayerNorm(6)), T3, 1e-4),
    Case("layer_norm_noaffine", _mod(nn.LayerNorm([4, 6], elementwise_affine=False)), T3, 1e-4),
    Case("group_norm", _mod(nn.GroupNorm(2, 4)), [((2, 4, 5, 5), "f")], 1e-4),
    Case("instance_norm", _mod(nn.InstanceNorm2d(3, affine=True)), tol=1e-4),
    Case("rms_norm", _mod(nn.RMSNorm(6)), T3, 1e-4),
    # activations
    *[Case(name, _mod(m)) for name, m in [
        ("relu", nn.ReLU()), ("relu6", nn.ReLU6()), ("sigmoid", nn.Sigmoid()),
        ("tanh", nn.Tanh()), ("silu", nn.SiLU()), ("gelu", nn.GELU()),
        ("gelu_tanh", nn.GELU("tanh")), ("hardswish", nn.Hardswish()),
        ("hardsigmoid", nn.Hardsigmoid()), ("leaky_relu", nn.LeakyReLU(0.2)),
        ("elu", nn.ELU(0.7)), ("selu", nn.SELU()), ("celu", nn.CELU(0.5)),
        ("softplus", nn.Softplus(beta=2.0)), ("mish", nn.Mish()), ("prelu", nn.PReLU(3)),
        ("hardtanh", nn.Hardtanh(-0.5, 0.5)), ("logsigmoid", nn.LogSigmoid()),
    ]],
    Case("softmax", _mod(nn.Softmax(dim=1))),
    Case("log_softmax", _mod(nn.LogSoftmax(dim=-1))),
    Case("glu", _mod(nn.GLU(-1)), T3),
    # elementwise
    Case("add_alpha", _fn(lambda a, b: torch.add(a, b, alpha=2)), TWO),
    Case("sub_scalar", _fn(lambda a: a - 1.5), V),
    Case("rsub", _fn(lambda a: 2 - a), V),
    Case("mul_div", _fn(lambda a, b: a * b / (b.abs() + 1)), TWO),
    Case("pow", _fn(lambda a: a.abs() ** 1.5 + a**2), V),
    Case("int_div_floor", _fn(lambda a: torch.div(a, 3, rounding_mode="floor")),
         [((2, 5), "i")], 0, -20, 20),
    Case("int_true_div", _fn(lambda a: a / 4), [((2, 5), "i")], 1e-6, -20, 20),
    Case("remainder", _fn(lambda a: a % 3), [((2, 5), "i")], 0, -20, 20),
    Case("unary_math", _fn(lambda a: torch.exp(a) + torch.sin(a) + torch.cos(a) + torch.erf(a)
                           + torch.floor(a) + torch.ceil(a) + torch.sign(a)), V),
    Case("sqrt_rsqrt_log", _fn(lambda a: torch.sqrt(a.abs() + 1) + torch.rsqrt(a.abs() + 1)
                               + torch.log(a.abs() + 1) + torch.log1p(a.abs())), V),
    Case("compare_where", _fn(lambda a, b: torch.where(a > b, a, b * 2)), TWO),
    Case("compare_mixed", _fn(lambda a: ((a >= 0.5) | (a < -0.5)).float()), V),
    Case("masked_fill", _fn(lambda a: a.masked_fill(a < 0, -1.0)), V),
    Case("clamp", _fn(lambda a: a.clamp(-0.5, 0.5) + a.clamp(min=0.1)), V),
    Case("max_min", _fn(lambda a, b: torch.maximum(a, b) - torch.minimum(a, b)), TWO),
    Case("logical", _fn(lambda a: (~(a > 0)).float()), V),
    Case("int_float_add", _fn(lambda a: a + 0.5), [((2, 5), "i")]),
    # shape
    Case("view_flatten", _fn(lambda a: a.flatten(1).view(2, -1, 2)), T3),
    Case("permute_transpose", _fn(lambda a: a.permute(2, 0, 1).transpose(0, 1)), T3),
    Case("unsqueeze_squeeze", _fn(lambda a: a.unsqueeze(1).squeeze(1).unsqueeze(-1)), T3),
    Case("expand", _fn(lambda a: a[:, :1].expand(-1, 3, -1)), T3),
    Case("cat_stack", _fn(lambda a, b: torch.cat([torch.stack([a, b], 1).flatten(1, 2), a], 1)),
         TWO),
    Case("split_chunk", _fn(lambda a: [t * i for i, t in enumerate(a.split([1, 2, 3], -1))]
                           + list(a.chunk(2, 1))), T3),
    Case("unbind", _fn(lambda a: a.unbind(1)), T3),
    Case("slice_step", _fn(lambda a: a[:, 1:4:2, ::3] + 0), T3),
    Case("select_neg", _fn(lambda a: a[:, -1]), T3),
    Case("index_tensor", _fn(lambda a: a[:, torch.tensor([2, 0, 1])]), T3),
    Case("index_select", _fn(lambda a: a.index_select(2, torch.tensor([5, 1]))), T3),
    Case("gather", _fn(lambda a: a.gather(2, a.argsort(dim=2)[..., :3])), T3),
    Case("embedding", _mod(nn.Embedding(11, 4)), [((2, 5), "i")], 1e-6, 0, 11),
    Case("flip", _fn(lambda a: a.flip(1, 2)), T3),
    Case("repeat", _fn(lambda a: a.repeat(1, 2, 1)), T3),
    Case("roll", _fn(lambda a: a.roll(2, 2)), T3),
    Case("tril_triu", _fn(lambda a: a.tril() + a.triu(1)), T3),
    Case("to_dtype", _fn(lambda a: a.to(torch.int32).to(torch.float32)), V),
    Case("arange_full", _fn(lambda a: a + torch.arange(5) + torch.full((2, 5), 3.0)
                            + torch.ones(5) + torch.zeros_like(a)), V),
    # in-place assignment, scatters, advanced indexing
    Case("slice_assign_mask", _fn(lambda a: a + _swin_mask())),
    Case("slice_assign_input", _fn(_slice_assign), T3),
    Case("slice_assign_step", _fn(_slice_assign_step), T3),
    Case("select_assign", _fn(_select_assign), T3),
    Case("copy_broadcast", _fn(_copy_into), T3),
    Case("fill_after_slice", _fn(_fill_slice), T3),
    Case("index_put_int", _fn(_index_put_int), T3),
    Case("index_put_inner", _fn(_index_put_inner), T3),
    Case("index_put_accumulate", _fn(_index_put_acc), T3),
    Case("index_put_mask", _fn(_index_put_mask), T3),
    Case("index_put_mask_row", _fn(_index_put_mask_row), T3),
    Case("index_inner", _fn(lambda a: a[..., torch.tensor([3, 0, -1]), :]),
         [((2, 3, 6, 4), "f")]),
    Case("index_two_separated", _fn(lambda a: a[torch.tensor([1, 0]), :, torch.tensor([5, -2])]),
         T3),
    Case("index_two_adjacent", _fn(lambda a: a[:, torch.tensor([[1], [3]]),
                                                 torch.tensor([0, 2, 5])]), T3),
    Case("index_from_input", _fn(lambda a, i: (a[:, i % 4, :], a[i % 2, :, i])),
         [((2, 4, 6), "f"), ((3,), "i")], 1e-5, 0, 6),
    Case("scatter_ops", _fn(_scatters), T3),
    Case("batch_norm_batch_stats", _fn(lambda a: F.batch_norm(a, None, None, training=True,
                                                               eps=1e-5)), tol=1e-4),
    Case("batch_norm_batch_stats_affine", _fn(lambda a: F.batch_norm(
        a, None, None, torch.tensor([0.5, 2.0, 1.0]), torch.tensor([0.1, 0.0, -1.0]),
        training=True)), tol=1e-4),
    Case("batch_norm_train_running", lambda: _TrainBN(), tol=1e-4),
    # core-ATen ops added from the coverage table
    Case("inverse_hyperbolic", _fn(lambda a: torch.asinh(a) + torch.acosh(a.abs() + 1)
                                   + torch.atanh(a.tanh() * 0.9)), V),
    Case("atan2", _fn(lambda a, c: torch.atan2(a, c) + torch.atan2(a, torch.zeros_like(c))),
         TWO),
    Case("log10_trunc", _fn(lambda a: torch.log10(a.abs() + 1) + torch.trunc(a * 3)), V),
    Case("prod_all", _fn(lambda a: (a * 0.5 + 1).prod()), V),
    Case("diagonal", _fn(lambda a: (a.diagonal(1, 1, 2), a.diagonal(-1, -1, 1),
                                    torch.diagonal(a, 0, 0, 2))), T3),
    Case("cdist", _fn(lambda a, c: (torch.cdist(a, c), torch.cdist(a, c, p=1.0),
                                    torch.cdist(a, c, p=3.0))),
         [((2, 4, 3), "f"), ((2, 5, 3), "f")], 1e-4),
    Case("pdist", _fn(lambda a: F.pdist(a)), [((5, 3), "f")], 1e-4),
    Case("grid_sample", _fn(lambda a, g: (F.grid_sample(a, g.tanh(), align_corners=False),
                                          F.grid_sample(a, g.tanh(), mode="nearest",
                                                        padding_mode="border",
                                                        align_corners=True))),
         [((1, 2, 5, 6), "f"), ((1, 3, 4, 2), "f")], 1e-4),
    Case("masked_scatter", _fn(lambda a, c: a.masked_scatter(a[:, :1] > 0, c)),
         [((2, 4, 6), "f"), ((2, 4, 6), "f")]),
    # reductions
    Case("sum_mean", _fn(lambda a: a.sum(1) + a.mean((1, 2), keepdim=True).squeeze(-1)), T3),
    Case("amax_amin", _fn(lambda a: a.amax(-1) - a.amin(1, keepdim=True).squeeze(1)[:, :4]),
         [((2, 4, 4), "f")]),
    Case("max_dim", _fn(lambda a: a.max(1)), T3),
    Case("argmax", _fn(lambda a: a.argmax(-1)), T3),
    Case("var_std", _fn(lambda a: a.var(-1) + a.std(1, keepdim=True).mean(-1)), T3, 1e-4),
    Case("norm", _fn(lambda a: F.normalize(a, dim=-1)), T3),
    Case("any_all", _fn(lambda a: (a > 0).any(-1).float() + (a > -1).all(1).float().sum()), T3),
    Case("cumsum", _fn(lambda a: a.cumsum(1)), T3),
    Case("topk", _fn(lambda a: a.topk(2, -1)), T3),
    Case("logsumexp", _fn(lambda a: torch.logsumexp(a, -1)), T3),
    # attention
    Case("sdpa", _fn(F.scaled_dot_product_attention), [((2, 2, 5, 4), "f")] * 3),
    Case("sdpa_causal", _fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v,
                                                                           is_causal=True)),
         [((2, 2, 5, 4), "f")] * 3),
    Case("sdpa_mask", _fn(lambda q, k, v, m: F.scaled_dot_product_attention(
        q, k, v, attn_mask=m)), [((2, 2, 5, 4), "f")] * 3 + [((5, 5), "f")]),
    Case("mha", _mod(nn.MultiheadAttention(8, 2, batch_first=True)), [((2, 5, 8), "f")] * 3,
         1e-4),
    # rnn
    Case("lstm", _mod(nn.LSTM(4, 6, batch_first=True)), SEQ, 1e-4),
    Case("lstm_bi_2layer", _mod(nn.LSTM(4, 3, num_layers=2, bidirectional=True)), SEQ, 1e-4),
    Case("gru", _mod(nn.GRU(4, 6, batch_first=True)), SEQ, 1e-4),
    Case("gru_bi", _mod(nn.GRU(4, 3, num_layers=2, bidirectional=True, batch_first=True)),
         SEQ, 1e-4),
]


class _TrainBN(nn.Module):
    """F.batch_norm in training mode with running stats (updated as a side effect)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rm", torch.zeros(3))
        self.register_buffer("rv", torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.rm, self.rv, training=True, momentum=0.1) * 2


def _bn() -> nn.Module:
    m = nn.BatchNorm2d(3)
    m.running_mean.uniform_(-1, 1)
    m.running_var.uniform_(0.5, 2)
    return m


def _bn1d() -> nn.Module:
    m = nn.BatchNorm1d(6)
    m.running_mean.uniform_(-1, 1)
    return m


def make_inputs(case: Case, seed: int = 0) -> list[torch.Tensor]:
    """Random inputs for a case."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for shape, kind in case.inputs:
        if kind == "i":
            out.append(torch.randint(case.low, case.high, shape, generator=gen))
        else:
            out.append(torch.randn(shape, generator=gen))
    return out


def run_both(module: nn.Module, inputs: list[torch.Tensor], **opts: Any) -> tuple[list, list]:
    """(onnxruntime outputs, torch eager outputs) for ``module``."""
    torch.manual_seed(0)
    module.eval()
    sm = import_torch_module(module, ConvertOptions(example_inputs=tuple(inputs), **opts))
    ort = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString())
    feeds = [x.numpy() for x in inputs]
    return ort.run(feeds), sm.make_runner().run(feeds)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op(case: Case) -> None:
    torch.manual_seed(0)
    module = case.module()
    got, ref = run_both(module, make_inputs(case))
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape, (g.shape, r.shape)
        if r.dtype == np.bool_ or np.issubdtype(r.dtype, np.integer):
            np.testing.assert_array_equal(g, r)
        else:
            scale = max(1.0, float(np.abs(r).max()) if r.size else 1.0)
            np.testing.assert_allclose(g, r, rtol=0, atol=case.tol * scale)


#: cases re-run through torch's full core-ATen decomposition (as a decomposed .pt2 holds
#: them): the handlers of core ops like _native_batch_norm_legit.no_stats are exercised
CORE_IR = ["batch_norm_batch_stats", "batch_norm_batch_stats_affine", "batch_norm_train_running",
           "batch_norm", "slice_assign_mask", "slice_assign_step", "select_assign",
           "index_put_inner", "index_put_mask", "index_two_separated", "copy_broadcast",
           "scatter_ops", "group_norm", "var_std", "diagonal", "pdist", "masked_scatter"]


@pytest.mark.parametrize("case_id", CORE_IR)
def test_op_core_aten_ir(case_id: str) -> None:
    from modelconv.importers.torch.lower import lower_program

    case = next(c for c in CASES if c.id == case_id)
    torch.manual_seed(0)
    module = case.module().eval()
    inputs = make_inputs(case)
    ep = torch.export.export(module, tuple(inputs)).run_decompositions()
    model = lower_program(ep)
    got = OnnxRuntimeRunner(ir.to_proto(model).SerializeToString()).run(
        [x.numpy() for x in inputs])
    with torch.no_grad():
        ref = module(*inputs)
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    assert len(got) == len(refs)
    for g, r in zip(got, refs, strict=True):
        r = r.numpy()
        assert g.shape == r.shape, (g.shape, r.shape)
        scale = max(1.0, float(np.abs(r).max()) if r.size else 1.0)
        np.testing.assert_allclose(g, r, rtol=0, atol=case.tol * scale)


def _assign_rows(a: torch.Tensor) -> torch.Tensor:
    y = a * 1
    y[:, torch.tensor([0, -1])] = a[:, 1:3] * 2  # values expanded over the dynamic batch
    y[:, 1:3, 2::2] = 0.5                          # torch guards a dim-0 slice to batch != 2
    return y


class _AssignRows(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _assign_rows(x)


def test_index_put_and_slice_assign_on_dynamic_batch() -> None:
    module = _AssignRows().eval()
    x = torch.randn(2, 4, 6)
    sm = import_torch_module(module, ConvertOptions(example_inputs=(x,), dynamic_batch=True))
    ort = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString())
    for batch in (2, 5):
        other = torch.randn(batch, 4, 6)
        np.testing.assert_allclose(ort.run([other.numpy()])[0], _assign_rows(other).numpy(),
                                   atol=1e-6)


class _MaskedSdpa(nn.Module):
    """SDPA with a mask whose second query row sees no key at all."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        mask = torch.ones(5, 5, dtype=torch.bool)
        mask[1] = False
        self.register_buffer("mask", mask if kind == "bool" else
                             torch.zeros(5, 5).masked_fill(~mask, float("-inf")))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)


@pytest.mark.parametrize("capture", ["export", "fast"])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_sdpa_fully_masked_row_is_zero(monkeypatch: pytest.MonkeyPatch, capture: str,
                                       kind: str) -> None:
    """torch gives 0 for a query row every key is masked from; a plain Softmax gives NaN."""
    monkeypatch.setenv("MODELCONV_TORCH_CAPTURE", capture)
    inputs = [torch.randn(2, 2, 5, 4, generator=torch.Generator().manual_seed(i))
              for i in range(3)]
    got, ref = run_both(_MaskedSdpa(kind), inputs)
    assert np.all(ref[0][:, :, 1] == 0)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=1e-5)
