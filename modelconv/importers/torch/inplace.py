"""Which in-place ATen ops of an undecomposed program may be lowered as their functional form.

``torch.export.export`` returns a training-IR program that still holds in-place ops
(``aten.relu_``, ``aten.add_`` from ``nn.ReLU(inplace=True)`` and ``x += y``). Running
``run_decompositions`` functionalises them, but it re-traces the whole program and costs
more than the export itself. A dataflow graph can instead lower ``y = relu_(x)`` as
``y = relu(x)`` when nobody can observe the difference::

    a = conv(...)            a = conv(...)
    b = relu_(a)     ==>     b = relu(a)        valid only if no user of ``a`` (or of a
    c = add_(b, s)           c = add(b, s)      tensor ``a`` aliases) runs after the
                                                mutation, and ``a`` is no graph input

An in-place dropout with ``train=False`` (``nn.Dropout(inplace=True)`` in eval, as in
torchvision's EfficientNet and MobileNetV3 heads, often on a view such as ``flatten``'s
output) writes nothing at all, so it is always safe.

Anything else (a mutated input/buffer, a view of the mutated tensor, a later reader of
the old node, an ``out=`` or other mutating op) sends the program through the
decompositions as before.
"""

from __future__ import annotations

import operator
from typing import Any

import torch


def _returns_alias(target: Any) -> bool:
    """True when the op's output may alias an input (views, in-place ops, unknown targets)."""
    if isinstance(target, torch._ops.OpOverload):
        return any(r.alias_info is not None for r in target._schema.returns)
    return True


def _aliases(node: torch.fx.Node) -> bool:
    if node.op != "call_function":
        return node.op != "placeholder"
    if _is_getitem(node):
        parent = node.args[0]
        return isinstance(parent, torch.fx.Node) and _aliases(parent)
    return _returns_alias(node.target)


def _is_getitem(node: torch.fx.Node) -> bool:
    return node.target is operator.getitem


def mutates(target: Any) -> bool:
    """True when an op writes to one of its arguments (in-place and ``out=`` overloads)."""
    if not isinstance(target, torch._ops.OpOverload):
        return False
    return any(a.alias_info is not None and a.alias_info.is_write
               for a in target._schema.arguments)


def functional_key(target: Any) -> str | None:
    """``aten.relu.default`` for ``aten.relu_.default``; None for other mutating ops."""
    if not isinstance(target, torch._ops.OpOverload):
        return None
    schema = target._schema
    args = schema.arguments
    first_written = bool(args) and args[0].alias_info is not None and args[0].alias_info.is_write
    others_written = any(a.alias_info is not None and a.alias_info.is_write for a in args[1:])
    if not schema.name.endswith("_") or not first_written or others_written:
        return None
    namespace, name = schema.name.split("::", 1)
    return f"{namespace}.{name[:-1]}.{target._overloadname}"


#: in-place ops that leave their input unchanged when called with ``train=False``
_IDENTITY_IN_EVAL = {"aten::dropout_", "aten::feature_dropout_", "aten::alpha_dropout_",
                     "aten::feature_alpha_dropout_"}


def writes_nothing(node: torch.fx.Node) -> bool:
    """True for an in-place dropout called with ``train=False``: it does not write.

    Args:
        node: a call_function node.

    Returns:
        Whether the node is such a dropout (its ``train`` argument literally False).
    """
    schema = getattr(node.target, "_schema", None)
    if schema is None or schema.name not in _IDENTITY_IN_EVAL:
        return False
    train = node.kwargs.get("train", node.args[2] if len(node.args) > 2 else None)
    return train is False


def safe_inplace(node: torch.fx.Node, order: dict[torch.fx.Node, int]) -> bool:
    """True when lowering in-place ``node`` functionally cannot change what anyone reads.

    Walks the chain of tensors the mutation writes through (``relu_(add_(x, y))`` writes
    ``x``): each must be an intermediate result with no readers after ``node`` and no
    views, and the chain must end at a non-aliasing op.
    """
    if writes_nothing(node):
        return True
    here = order[node]
    base = node.args[0] if node.args else None
    while True:
        if not isinstance(base, torch.fx.Node) or base.op != "call_function":
            return False  # graph inputs, parameters, buffers and constants are observable
        for user in base.users:
            if user is node:
                continue
            if order[user] > here or (_aliases(user) and not _in_chain(user, node)):
                return False
        if functional_key(base.target) is None:
            return not _aliases(base)
        base = base.args[0] if base.args else None


def _in_chain(user: torch.fx.Node, node: torch.fx.Node) -> bool:
    # an earlier in-place op on the same tensor: its own readers are checked on the walk
    current: Any = node
    while isinstance(current, torch.fx.Node) and current.op == "call_function":
        if current is user:
            return True
        if functional_key(current.target) is None:
            return False
        current = current.args[0] if current.args else None
    return False


__all__ = ["functional_key", "mutates", "safe_inplace", "writes_nothing"]
