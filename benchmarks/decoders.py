"""GPT-2- and Llama-style decoders in plain torch, built from a config (the scale models).

``--model benchmarks.decoders:<name>`` builds one (factories take no arguments), e.g.
``gpt2_1p5b`` or ``llama_3b``; :data:`CONFIGS` lists them. The GPT-2 model ties its LM head
to the token embedding and keeps its causal mask in a non-persistent buffer; the Llama model
has an untied head, RMSNorm, rotary embeddings (non-persistent ``inv_freq``), grouped-query
attention and a SwiGLU MLP. Both take ``input_ids`` [batch, seq] and return logits.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DecoderConfig:
    """One decoder: style ("gpt2" or "llama") and sizes."""

    style: str
    n_layer: int
    d_model: int
    n_head: int
    vocab: int
    n_positions: int = 1024
    ffn: int = 0  # llama: the SwiGLU width (gpt2: 4 * d_model)
    n_kv_head: int = 0  # llama: key/value heads (0: n_head)

    def params(self) -> int:
        """Parameter count (the tied GPT-2 head counted once)."""
        d, n = self.d_model, self.n_layer
        if self.style == "gpt2":
            return n * (12 * d * d + 13 * d) + self.vocab * d + self.n_positions * d + 2 * d
        kv = (self.n_kv_head or self.n_head) * (d // self.n_head)
        return n * (2 * d * d + 2 * d * kv + 3 * d * self.ffn + 2 * d) + 2 * self.vocab * d + d


CONFIGS = {
    "gpt2_micro": DecoderConfig("gpt2", 1, 64, 4, 256, 32),
    "gpt2_small": DecoderConfig("gpt2", 2, 320, 5, 1024, 64),
    "gpt2_test": DecoderConfig("gpt2", 4, 1024, 16, 8000, 128),
    "gpt2_tiny": DecoderConfig("gpt2", 8, 512, 8, 32000, 256),
    "llama_tiny": DecoderConfig("llama", 8, 512, 8, 32000, 256, ffn=1408, n_kv_head=4),
    "gpt2_0p5b": DecoderConfig("gpt2", 24, 1280, 20, 50257),
    "gpt2_1p5b": DecoderConfig("gpt2", 48, 1600, 25, 50257),
    "gpt2_3b": DecoderConfig("gpt2", 36, 2560, 32, 50257),
    "llama_0p5b": DecoderConfig("llama", 24, 1280, 20, 32000, ffn=3456, n_kv_head=4),
    "llama_1p5b": DecoderConfig("llama", 28, 2048, 16, 32000, ffn=5632, n_kv_head=8),
    "llama_3b": DecoderConfig("llama", 32, 2560, 20, 32000, ffn=6912, n_kv_head=4),
}


class _Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        d, self.h = cfg.d_model, cfg.n_head
        self.kv = cfg.n_kv_head or cfg.n_head
        self.hd = d // self.h
        self.gpt2 = cfg.style == "gpt2"
        if self.gpt2:
            self.c_attn = nn.Linear(d, 3 * d)
            self.c_proj = nn.Linear(d, d)
            mask = torch.tril(torch.ones(cfg.n_positions, cfg.n_positions, dtype=torch.bool))
            self.register_buffer("mask", mask, persistent=False)
        else:
            self.q_proj = nn.Linear(d, d, bias=False)
            self.k_proj = nn.Linear(d, self.kv * self.hd, bias=False)
            self.v_proj = nn.Linear(d, self.kv * self.hd, bias=False)
            self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
                ) -> torch.Tensor:
        b, t, d = x.shape
        if self.gpt2:
            q, k, v = self.c_attn(x).split(d, dim=2)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(b, t, self.h, self.hd).transpose(1, 2)
        k = k.view(b, t, self.kv, self.hd).transpose(1, 2)
        v = v.view(b, t, self.kv, self.hd).transpose(1, 2)
        if rope is not None:
            q, k = _rotate(q, *rope), _rotate(k, *rope)
        if self.kv != self.h:
            k = k.repeat_interleave(self.h // self.kv, dim=1)
            v = v.repeat_interleave(self.h // self.kv, dim=1)
        att = q @ k.transpose(-2, -1) / math.sqrt(self.hd)
        causal = (self.mask[:t, :t] if self.gpt2
                  else torch.ones(t, t, dtype=torch.bool, device=x.device).tril())
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.c_proj(y) if self.gpt2 else self.o_proj(y)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


class _RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class _Block(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.gpt2 = cfg.style == "gpt2"
        norm = (lambda: nn.LayerNorm(d)) if self.gpt2 else (lambda: _RMSNorm(d))
        self.ln_1, self.ln_2 = norm(), norm()
        self.attn = _Attention(cfg)
        if self.gpt2:
            self.fc, self.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        else:
            self.gate = nn.Linear(d, cfg.ffn, bias=False)
            self.up = nn.Linear(d, cfg.ffn, bias=False)
            self.down = nn.Linear(cfg.ffn, d, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
                ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope)
        h = self.ln_2(x)
        if self.gpt2:
            return x + self.proj(nn.functional.gelu(self.fc(h), approximate="tanh"))
        return x + self.down(nn.functional.silu(self.gate(h)) * self.up(h))


class Decoder(nn.Module):
    """A decoder-only LM: ``forward(input_ids) -> logits``."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.wte = nn.Embedding(cfg.vocab, d)
        if cfg.style == "gpt2":
            self.wpe = nn.Embedding(cfg.n_positions, d)
        else:
            hd = d // cfg.n_head
            inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
            self.register_buffer("inv_freq", inv, persistent=False)
        self.h = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(d) if cfg.style == "gpt2" else _RMSNorm(d)
        self.lm_head = nn.Linear(d, cfg.vocab, bias=False)
        if cfg.style == "gpt2":
            self.lm_head.weight = self.wte.weight  # tied, as GPT-2

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits [batch, seq, vocab]."""
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device)
        x = self.wte(input_ids)
        rope = None
        if self.cfg.style == "gpt2":
            x = x + self.wpe(pos)
        else:
            freqs = torch.outer(pos.to(torch.float32), self.inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            rope = (emb.cos(), emb.sin())
        for block in self.h:
            x = block(x, rope)
        return self.lm_head(self.ln_f(x))


def build(name: str) -> Decoder:
    """The decoder called ``name`` (a key of :data:`CONFIGS`), in eval mode."""
    return Decoder(CONFIGS[name]).eval()


for _name in CONFIGS:
    globals()[_name] = functools.partial(build, _name)


def random_state(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Small seeded random weights for ``model``'s state (tied tensors stored once).

    Weights ~ N(0, 0.02), norms' scales around 1 and biases small, so logits stay finite
    and differences between runtimes are meaningful. Tensors are generated one at a time.
    """
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        shape = tuple(param.shape)
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            t = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith("bias"):
            t = 0.02 * torch.randn(shape, generator=gen)
        else:
            t = torch.empty(shape).normal_(0.0, 0.02, generator=gen)
        out[name] = t
    return out
