"""Torch benchmark models: torchvision when it imports, else hand-written equivalents.

The hand-written networks follow the published architectures closely enough to stress the
same ops (conv/bn/relu, depthwise conv, squeeze-excite, hardswish/SiLU, attention, GELU);
results record which implementation was used (``impl``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks.zoo import ModelSpec


def torchvision_available() -> bool:
    """True when torchvision imports next to this torch."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # torchvision can fail with RuntimeError when built for another torch
        return False
    return True


# --- hand-written equivalents --------------------------------------------------------------

def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, width: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        cout = width * 4 if bottleneck else width
        if bottleneck:
            self.body = nn.Sequential(_conv_bn(cin, width, 1), _conv_bn(width, width, 3, stride),
                                      _conv_bn(width, cout, 1, act=None))
        else:
            self.body = nn.Sequential(_conv_bn(cin, width, 3, stride),
                                      _conv_bn(width, cout, 3, act=None))
        self.short = (nn.Identity() if stride == 1 and cin == cout
                      else _conv_bn(cin, cout, 1, stride, act=None))
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.short(x))


class HandResNet(nn.Module):
    """ResNet-18 (basic blocks) or ResNet-50 (bottlenecks)."""

    def __init__(self, depths: tuple[int, ...], bottleneck: bool, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        blocks: list[nn.Module] = []
        cin = 64
        for i, n in enumerate(depths):
            for j in range(n):
                block = _ResBlock(cin, 64 * 2**i, 2 if (j == 0 and i > 0) else 1, bottleneck)
                cin = block.out_channels
                blocks.append(block)
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(
            self.blocks(self.stem(x)), 1), 1))


class _SE(nn.Module):
    def __init__(self, c: int, squeeze: int, gate: type[nn.Module]) -> None:
        super().__init__()
        self.fc1, self.fc2, self.gate = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(torch.relu(self.fc1(s))))


class _InvRes(nn.Module):
    """Inverted residual (MobileNetV3 block / EfficientNet MBConv)."""

    def __init__(self, cin: int, exp: int, cout: int, k: int, stride: int, se: int,
                 act: type[nn.Module], gate: type[nn.Module]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(_conv_bn(cin, exp, 1, act=act))
        layers.append(_conv_bn(exp, exp, k, stride, groups=exp, act=act))
        if se:
            layers.append(_SE(exp, se, gate))
        layers.append(_conv_bn(exp, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def _mbv3_large() -> nn.Module:
    hs, re = nn.Hardswish, nn.ReLU
    # (kernel, expansion, out, se, activation, stride): the MobileNetV3-Large table
    cfg = [(3, 16, 16, 0, re, 1), (3, 64, 24, 0, re, 2), (3, 72, 24, 0, re, 1),
           (5, 72, 40, 1, re, 2), (5, 120, 40, 1, re, 1), (5, 120, 40, 1, re, 1),
           (3, 240, 80, 0, hs, 2), (3, 200, 80, 0, hs, 1), (3, 184, 80, 0, hs, 1),
           (3, 184, 80, 0, hs, 1), (3, 480, 112, 1, hs, 1), (3, 672, 112, 1, hs, 1),
           (5, 672, 160, 1, hs, 2), (5, 960, 160, 1, hs, 1), (5, 960, 160, 1, hs, 1)]
    layers: list[nn.Module] = [_conv_bn(3, 16, 3, 2, act=hs)]
    cin = 16
    for k, exp, cout, se, act, s in cfg:
        layers.append(_InvRes(cin, exp, cout, k, s, (exp // 4) if se else 0, act,
                              nn.Hardsigmoid))
        cin = cout
    layers += [_conv_bn(cin, 960, 1, act=hs), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(960, 1280), nn.Hardswish(), nn.Linear(1280, 1000)]
    return nn.Sequential(*layers)


def _effnet_b0() -> nn.Module:
    # (expansion, out, repeats, stride, kernel): the EfficientNet-B0 table
    cfg = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
           (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)]
    layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, act=nn.SiLU)]
    cin = 32
    for e, cout, n, s, k in cfg:
        for i in range(n):
            layers.append(_InvRes(cin, cin * e, cout, k, s if i == 0 else 1,
                                  max(1, cin // 4), nn.SiLU, nn.Sigmoid))
            cin = cout
    layers += [_conv_bn(cin, 1280, 1, act=nn.SiLU), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(1280, 1000)]
    return nn.Sequential(*layers)


class HandViT(nn.Module):
    """Vision transformer: 16x16 patches, class token, pre-norm encoder layers."""

    def __init__(self, image: int = 224, patch: int = 16, dim: int = 384, depth: int = 12,
                 heads: int = 6, mlp: int = 1536, classes: int = 1000) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (image // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, mlp, 0.0, "gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        return self.head(self.norm(self.encoder(t))[:, 0])


class LogitsOnly(nn.Module):
    """A transformers causal LM called with input_ids only, returning the logits."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lm(input_ids, use_cache=False, return_dict=False)[0]
        return out


def _gpt2(params: dict[str, Any], meta: bool) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    extra: dict[str, Any] = {"attn_implementation": "eager"}  # plain ops, no SDPA kernel
    cfg = GPT2Config(**params, tie_word_embeddings=False, use_cache=False, bos_token_id=0,
                     eos_token_id=0, **extra)
    ctx = torch.device("meta") if meta else contextlib.nullcontext()
    with ctx:
        lm = GPT2LMHeadModel(cfg)
    return LogitsOnly(lm)


def _torchvision_builders() -> dict[str, Callable[[], nn.Module]]:
    from torchvision import models as tvm

    return {
        "resnet18": lambda: tvm.resnet18(weights=None),
        "resnet50": lambda: tvm.resnet50(weights=None),
        "mobilenet_v3": lambda: tvm.mobilenet_v3_large(weights=None),
        "efficientnet_b0": lambda: tvm.efficientnet_b0(weights=None),
        "vit_small": lambda: tvm.VisionTransformer(image_size=224, patch_size=16, num_layers=12,
                                                   num_heads=6, hidden_dim=384, mlp_dim=1536),
    }


_HAND: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: HandResNet((2, 2, 2, 2), bottleneck=False),
    "resnet50": lambda: HandResNet((3, 4, 6, 3), bottleneck=True),
    "mobilenet_v3": _mbv3_large,
    "efficientnet_b0": _effnet_b0,
    "vit_small": HandViT,
}


def build_module(spec: ModelSpec, *, empty: bool = False) -> tuple[nn.Module, str]:
    """(module in eval mode, implementation name). ``empty``: uninitialised weights (fast;
    for loading a state_dict into), built on the meta device and materialised with to_empty."""
    torch.manual_seed(0)
    if spec.name.startswith("gpt2"):
        module, impl = _gpt2(spec.params, meta=empty), "transformers"
    elif torchvision_available():
        module, impl = _torchvision_builders()[spec.name](), "torchvision"
    else:
        module, impl = _HAND[spec.name](), "hand-written"
    if empty and any(p.is_meta for p in module.parameters()):
        module = module.to_empty(device="cpu")
    elif not empty:
        make_nontrivial_(module)
    return module.eval(), impl


def make_nontrivial_(module: nn.Module, seed: int = 1) -> None:
    """Give every BatchNorm non-trivial statistics and every zero-initialised Linear weights.

    Freshly initialised BN layers (mean 0, var 1, scale 1, shift 0) are near identities, and
    torchvision's ViT head starts at zero (the output would be all zeros), so converter
    mistakes there would go unnoticed by the error column.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear) and not m.weight.any():
                m.weight.normal_(0.0, 0.02, generator=gen)
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None \
                    and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def random_init_(module: nn.Module, seed: int = 0) -> None:
    """Cheap seeded init of an uninitialised module (matrices N(0, 0.02), LN 1, biases 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.02, generator=gen)
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()
