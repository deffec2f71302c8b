"""Model-scale checks: small versions of common architectures, written from code with random
weights, must match torch eager within 1e-4 x max|ref| in fp32."""

from __future__ import annotations

from collections.abc import Callable
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

pytestmark = pytest.mark.models


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18ish(nn.Module):
    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], width
        for i, cout in enumerate([width, width * 2, width * 4, width * 8]):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4, gate: Callable[[], nn.Module] = nn.Hardsigmoid):
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(c // r, 4), 1)
        self.fc2 = nn.Conv2d(max(c // r, 4), c, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(F.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, stride: int, act: type[nn.Module],
                 se: bool, se_gate: Callable[[], nn.Module] = nn.Hardsigmoid):
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), act(),
            SqueezeExcite(mid, gate=se_gate) if se else nn.Identity(),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV3ish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.Hardswish())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 2, nn.ReLU, True),
            InvertedResidual(16, 24, 4, 2, nn.ReLU, False),
            InvertedResidual(24, 24, 3, 1, nn.ReLU, False),
            InvertedResidual(24, 40, 3, 2, nn.Hardswish, True),
            InvertedResidual(40, 40, 3, 1, nn.Hardswish, True),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 64),
                                  nn.Hardswish(), nn.Dropout(0.2), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class EfficientNetish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.SiLU())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 1, nn.SiLU, True, nn.Sigmoid),
            InvertedResidual(16, 24, 6, 2, nn.SiLU, True, nn.Sigmoid),
            InvertedResidual(24, 24, 6, 1, nn.SiLU, True, nn.Sigmoid),
            InvertedResidual(24, 40, 6, 2, nn.SiLU, True, nn.Sigmoid),
        )
        self.head = nn.Sequential(nn.Conv2d(40, 64, 1, bias=False), nn.BatchNorm2d(64), nn.SiLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class ViTish(nn.Module):
    def __init__(self, dim: int = 32, depth: int = 2, heads: int = 4, patch: int = 8):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (32 // patch) ** 2 + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
        return self.head(self.norm(self.encoder(t))[:, 0])


class RecurrentTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.lstm = nn.LSTM(16, 24, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(48, 16, batch_first=True)
        self.out = nn.Linear(16, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.emb(ids))
        y, h = self.gru(y)
        return self.out(y), h


def _compare(model: nn.Module, inputs: tuple[torch.Tensor, ...], **opts: Any) -> None:
    torch.manual_seed(0)
    model.eval()
    sm = import_torch_module(model, ConvertOptions(example_inputs=inputs, **opts))
    ort = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString())
    feeds = [x.numpy() for x in inputs]
    got, ref = ort.run(feeds), sm.make_runner().run(feeds)
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape
        err = float(np.abs(g.astype(np.float64) - r).max())
        assert err <= 1e-4 * max(float(np.abs(r).max()), 1e-6), err


def _randomise_bn(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


IMG = (torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)),)


@pytest.mark.parametrize("factory", [ResNet18ish, MobileNetV3ish, EfficientNetish, ViTish],
                         ids=["resnet18", "mobilenetv3", "efficientnet", "vit"])
def test_vision(factory: Callable[[], nn.Module]) -> None:
    torch.manual_seed(0)
    _compare(_randomise_bn(factory()), IMG)


def test_resnet_dynamic_batch() -> None:
    torch.manual_seed(0)
    model = _randomise_bn(ResNet18ish()).eval()
    sm = import_torch_module(model, ConvertOptions(example_inputs=IMG, dynamic_batch=True))
    ort = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString())
    x = torch.randn(3, 3, 32, 32)
    np.testing.assert_allclose(ort.run([x.numpy()])[0], model(x).detach().numpy(), atol=1e-4)


def test_recurrent() -> None:
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    _compare(RecurrentTagger(), (ids,))


class _LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _hf(name: str) -> nn.Module:
    t = pytest.importorskip("transformers")
    common = dict(vocab_size=100, max_position_embeddings=64)
    if name == "gpt2":
        cfg = t.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=100,
                           use_cache=False)
        model = t.GPT2LMHeadModel(cfg)
    elif name == "bert":
        cfg = t.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, **common)
        model = t.BertForSequenceClassification(cfg)
    else:
        cfg = t.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, **common)
        model = t.DistilBertForSequenceClassification(cfg)
    return _LogitsOnly(model.eval())


@pytest.mark.parametrize("name", ["gpt2", "bert", "distilbert"])
def test_transformers(name: str) -> None:
    torch.manual_seed(0)
    model = _hf(name)
    ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[1, 6:] = 0
    _compare(model, (ids, mask))
