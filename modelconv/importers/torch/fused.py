"""Decompositions of the fused inference kernels that eager fast paths call.

``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` in eval mode without autograd
call one fused kernel instead of their ops. torch.export never sees them (its tracing turns
the fast path off), but ``torch.jit.trace`` records whatever ran, so a TorchScript archive of
a ViT traced under ``torch.no_grad()`` holds ``aten::_native_multi_head_attention``, which the
TorchScript route carries into the ExportedProgram. torch has no decomposition for these
kernels; the ones here spell them out in core ATen ops (linear, matmul, softmax, layer_norm)
so that the lowering handles what they produce:

    _native_multi_head_attention(q, k, v, E, H, W_qkv, b_qkv, W_o, b_o, mask, need_weights)
        ─► q/k/v = linear(., W_qkv chunk i, b_qkv chunk i) split into H heads
        ─► softmax(q @ k^T / sqrt(E / H), masked) @ v ─► heads merged ─► linear(., W_o, b_o)
    _transformer_encoder_layer_fwd(src, ...)
        ─► the attention above, residuals, two layer norms, the feed-forward (relu or gelu)

Masks follow the kernel: any non-zero (or True) entry is masked; ``mask_type`` 0 is an
``(L, S)`` attention mask, 1 a ``(B, S)`` key padding mask, 2 a ``(B, H, L, S)`` mask.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

#: mask_type -> how a mask of that type broadcasts to (B, H, L, S)
_MASK_TYPES = {0: "attention mask (L, S)", 1: "key padding mask (B, S)",
               2: "mask (B, H, L, S)"}


def _heads(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
           num_head: int) -> torch.Tensor:
    """linear(x) as (B, H, T, E / H)."""
    batch, length = x.shape[0], x.shape[1]
    y = F.linear(x, weight, bias)
    return y.view(batch, length, num_head, -1).transpose(1, 2)


def _masked(mask: torch.Tensor, mask_type: int | None, batch: int) -> torch.Tensor:
    """The kernel's mask as a boolean (True = masked) broadcastable to (B, H, L, S)."""
    if mask_type not in _MASK_TYPES:
        raise ValueError(f"_native_multi_head_attention: mask_type {mask_type} is not one of "
                         f"{_MASK_TYPES}")
    masked = mask if mask.dtype == torch.bool else mask != 0
    if mask_type == 1:
        masked = masked.view(batch, 1, 1, -1)
    return masked


def native_multi_head_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, embed_dim: int,
    num_head: int, qkv_weight: torch.Tensor, qkv_bias: torch.Tensor,
    proj_weight: torch.Tensor, proj_bias: torch.Tensor, mask: torch.Tensor | None = None,
    need_weights: bool = True, average_attn_weights: bool = True,
    mask_type: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``aten._native_multi_head_attention`` in core ATen ops (batch-first inputs).

    Args:
        query: (B, L, E).
        key: (B, S, E).
        value: (B, S, E).
        embed_dim: E.
        num_head: H.
        qkv_weight: the packed (3E, E) input projection.
        qkv_bias: its (3E,) bias.
        proj_weight: the (E, E) output projection.
        proj_bias: its bias.
        mask: optional; non-zero / True entries are masked.
        need_weights: also return the attention weights.
        average_attn_weights: average the weights over the heads.
        mask_type: how ``mask`` is laid out (see the module docstring).

    Returns:
        (attention output (B, L, E), weights or None).

    Raises:
        ValueError: a mask without a known ``mask_type``.
    """
    batch, length = query.shape[0], query.shape[1]
    wq, wk, wv = qkv_weight.chunk(3)
    bq, bk, bv = qkv_bias.chunk(3)
    q = _heads(query, wq, bq, num_head)
    k = _heads(key, wk, bk, num_head)
    v = _heads(value, wv, bv, num_head)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(embed_dim // num_head))
    if mask is not None:
        scores = scores.masked_fill(_masked(mask, mask_type, batch), -math.inf)
    weights = torch.softmax(scores, dim=-1)
    out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, length, embed_dim)
    out = F.linear(out, proj_weight, proj_bias)
    if not need_weights:
        return out, None
    return out, weights.mean(dim=1) if average_attn_weights else weights


def transformer_encoder_layer_fwd(
    src: torch.Tensor, embed_dim: int, num_heads: int, qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor, proj_weight: torch.Tensor, proj_bias: torch.Tensor,
    use_gelu: bool, norm_first: bool, eps: float, norm_weight_1: torch.Tensor,
    norm_bias_1: torch.Tensor, norm_weight_2: torch.Tensor, norm_bias_2: torch.Tensor,
    ffn_weight_1: torch.Tensor, ffn_bias_1: torch.Tensor, ffn_weight_2: torch.Tensor,
    ffn_bias_2: torch.Tensor, mask: torch.Tensor | None = None,
    mask_type: int | None = None,
) -> torch.Tensor:
    """``aten._transformer_encoder_layer_fwd`` (``nn.TransformerEncoderLayer``'s fast path).

    Args:
        src: (B, L, E).
        embed_dim: E.
        num_heads: attention heads.
        qkv_weight: packed input projection of the attention.
        qkv_bias: its bias.
        proj_weight: output projection of the attention.
        proj_bias: its bias.
        use_gelu: gelu (else relu) between the feed-forward layers.
        norm_first: pre-norm (else post-norm) layer.
        eps: the layer norms' epsilon.
        norm_weight_1: first layer norm's weight.
        norm_bias_1: its bias.
        norm_weight_2: second layer norm's weight.
        norm_bias_2: its bias.
        ffn_weight_1: first feed-forward weight.
        ffn_bias_1: its bias.
        ffn_weight_2: second feed-forward weight.
        ffn_bias_2: its bias.
        mask: optional attention mask (as the attention kernel's).
        mask_type: its layout.

    Returns:
        The layer's output, (B, L, E).
    """
    def norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (embed_dim,), weight, bias, eps)

    x = norm(src, norm_weight_1, norm_bias_1) if norm_first else src
    x, _ = native_multi_head_attention(x, x, x, embed_dim, num_heads, qkv_weight, qkv_bias,
                                       proj_weight, proj_bias, mask, False, True, mask_type)
    x = x + src
    if not norm_first:
        x = norm(x, norm_weight_1, norm_bias_1)
    residual = x
    if norm_first:
        x = norm(x, norm_weight_2, norm_bias_2)
    x = F.linear(x, ffn_weight_1, ffn_bias_1)
    x = F.gelu(x) if use_gelu else F.relu(x)
    x = F.linear(x, ffn_weight_2, ffn_bias_2) + residual
    return norm(x, norm_weight_2, norm_bias_2) if not norm_first else x


def fused_decompositions() -> dict[Any, Any]:
    """{fused kernel overload: its decomposition} for ``ExportedProgram.run_decompositions``."""
    aten = torch.ops.aten
    return {aten._native_multi_head_attention.default: native_multi_head_attention,
            aten._transformer_encoder_layer_fwd.default: transformer_encoder_layer_fwd}


__all__ = ["fused_decompositions", "native_multi_head_attention",
           "transformer_encoder_layer_fwd"]
