"""Architectures the hostile state_dict cases name with --model."""

from __future__ import annotations

from typing import Any


def tiny_mlp() -> Any:
    """A 4 -> 3 linear layer."""
    import torch

    return torch.nn.Sequential(torch.nn.Linear(4, 3))
