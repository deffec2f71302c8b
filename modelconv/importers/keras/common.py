"""The Keras layer registry and helpers shared by the layer handlers.

A handler is ``fn(b, cfg, w, xs) -> KTensor | list[KTensor]``: the builder, the layer's
config dict (plus ``_keras_major`` 2/3 and ``_call_kwargs``), its :class:`LayerWeights`
and its input tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.importers.keras.spec import LayerSpec, LayerUnsupported, make_spec
from modelconv.importers.keras.tensors import FIRST, LAST, KTensor, const_f
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder
from modelconv.ir.layout import ir_axis, same_pads
from modelconv.registry import Registry

Handler = Callable[[GraphBuilder, dict[str, Any], LayerWeights, list[KTensor]],
                   "KTensor | list[KTensor]"]

LAYERS: Registry[Handler] = Registry("keras layer")


def keras_layer(*names: str, reads: Iterable[str] = (), inert: Iterable[str] = (),
                defaults: Mapping[str, Any] | None = None, kw_inputs: Iterable[str] = (),
                call_kwargs: Iterable[str] = (), consts: bool = False,
                check: Callable[[Mapping[str, Any]], list[str]] | None = None,
                ) -> Callable[[Handler], Handler]:
    """Register a handler for the Keras classes ``names`` with what it consumes.

    Args:
        names: Keras class names (as ``class_name`` in a model config).
        reads, inert, defaults, kw_inputs, call_kwargs, consts, check: the handler's
            :class:`~modelconv.importers.keras.spec.LayerSpec` (see ``make_spec``).

    Returns:
        A decorator registering the handler.

    Raises:
        ValueError: a name is registered twice or a key declared twice.
    """
    spec = make_spec(reads, inert, defaults, kw_inputs, call_kwargs, consts, check)
    return LAYERS.register(*names, check=spec)


def layer_spec(name: str) -> LayerSpec | None:
    """What the handler registered for Keras class ``name`` consumes (None: no handler)."""
    spec = LAYERS.check(name)
    return spec if isinstance(spec, LayerSpec) else None


#: training-time options of a layer's weights: no effect on the stored weights' use
WEIGHT_OPTIONS = ("kernel_initializer", "bias_initializer", "kernel_regularizer",
                  "bias_regularizer", "activity_regularizer", "kernel_constraint",
                  "bias_constraint")

ActFn = Callable[[GraphBuilder, ir.Value, int, int], ir.Value]


def _softmax(b: GraphBuilder, v: ir.Value, axis: int, major: int) -> ir.Value:
    return b.Softmax(v, axis=axis)


def _hard_sigmoid(b: GraphBuilder, v: ir.Value, axis: int, major: int) -> ir.Value:
    # tf.keras used 0.2x+0.5; Keras 3 uses relu6(x+3)/6
    return b.HardSigmoid(v, alpha=0.2 if major == 2 else 1.0 / 6.0, beta=0.5)


def _swish(b: GraphBuilder, v: ir.Value, axis: int, major: int) -> ir.Value:
    return b.Mul(v, b.Sigmoid(v))


ACTIVATIONS: dict[str, ActFn] = {
    "relu": lambda b, v, a, m: b.Relu(v),
    "relu6": lambda b, v, a, m: b.Clip(v, const_f(b, 0.0), const_f(b, 6.0)),
    "sigmoid": lambda b, v, a, m: b.Sigmoid(v),
    "tanh": lambda b, v, a, m: b.Tanh(v),
    "softmax": _softmax,
    "log_softmax": lambda b, v, a, m: b.LogSoftmax(v, axis=a),
    "elu": lambda b, v, a, m: b.Elu(v, alpha=1.0),
    "selu": lambda b, v, a, m: b.Selu(v),
    "softplus": lambda b, v, a, m: b.Softplus(v),
    "softsign": lambda b, v, a, m: b.Softsign(v),
    "swish": _swish,
    "silu": _swish,
    "gelu": lambda b, v, a, m: b.Gelu(v, approximate="none"),
    "hard_sigmoid": _hard_sigmoid,
    "hard_swish": lambda b, v, a, m: b.HardSwish(v),
    "hard_silu": lambda b, v, a, m: b.HardSwish(v),
    "exponential": lambda b, v, a, m: b.Exp(v),
    "mish": lambda b, v, a, m: b.Mish(v),
    "leaky_relu": lambda b, v, a, m: b.LeakyRelu(v, alpha=0.2),
}
IDENTITY_ACTIVATIONS = {None, "linear", ""}


def activation_name(spec: Any) -> str | None:
    """Normalise a serialized activation (str or dict) to its name; None for linear."""
    if isinstance(spec, dict):
        inner = spec.get("config")
        if isinstance(inner, str):
            spec = inner
        elif isinstance(inner, dict) and "name" in inner:
            spec = inner["name"]
        else:
            spec = spec.get("registered_name") or spec.get("class_name")
    if spec in IDENTITY_ACTIVATIONS:
        return None
    return str(spec).split(">")[-1].lower()


def activation_is_custom(spec: Any) -> bool:
    """True when ``spec`` names a user-defined (non-Keras) function."""
    if isinstance(spec, dict):
        module = str(spec.get("module") or "")
        registered = str(spec.get("registered_name") or "")
        if module and not module.startswith(("keras", "tf_keras", "tensorflow")):
            return True
        if ">" in registered:
            return True
    return False


def apply_activation(b: GraphBuilder, x: KTensor, spec: Any, major: int) -> KTensor:
    """Apply a Keras activation to ``x`` (layout preserved)."""
    name = activation_name(spec)
    if name is None:
        return x
    fn = ACTIVATIONS.get(name)
    if fn is None:
        raise LayerUnsupported(f"activation {name!r}")
    axis = ir_axis(-1, x.rank, x.layout) if x.rank > 0 else 0
    return x.like(fn(b, x.value, axis, major))


def keras_axis(axis: Any, rank: int, layout: str) -> int:
    """The IR axis holding Keras axis ``axis`` (from a layer's config) of a tensor.

    Raises:
        LayerUnsupported: the axis is not an int in range for ``rank``.
    """
    if not isinstance(axis, int) or not -rank <= axis < rank:
        raise LayerUnsupported(f"axis={axis!r} for a rank-{rank} input")
    return ir_axis(axis, rank, layout)


def major_of(cfg: dict[str, Any]) -> int:
    """Keras major version that wrote the layer config."""
    return int(cfg.get("_keras_major", 3))


def as_tuple(value: Any, n: int) -> tuple[int, ...]:
    """A Keras int-or-tuple argument as an n-tuple."""
    if isinstance(value, int | float):
        return (int(value),) * n
    out = tuple(int(v) for v in value)
    return out if len(out) == n else out * n


def padding_attrs(padding: str, kernel: tuple[int, ...], strides: tuple[int, ...],
                  dilation: tuple[int, ...]) -> dict[str, Any]:
    """ONNX pad attributes for Keras 'valid'/'same'/'causal' padding."""
    n = len(kernel)
    if padding == "valid":
        return {"pads": [0] * (2 * n)}
    if padding == "causal":
        return {"pads": [(kernel[0] - 1) * dilation[0], 0]}
    if padding == "same":
        if all(s == 1 for s in strides):
            return {"pads": same_pads(kernel, dilation)}
        return {"auto_pad": "SAME_UPPER"}
    raise LayerUnsupported(f"padding={padding!r}")


def per_channel(b: GraphBuilder, x: KTensor, vec: np.ndarray, suffix: str) -> ir.Value:
    """A per-channel vector shaped to broadcast against ``x`` in its layout."""
    from modelconv.importers.keras.tensors import channel_shape, weight

    vec = np.asarray(vec, dtype=np.float32).reshape(-1)
    return weight(b, vec.reshape(channel_shape(x.rank, x.layout, vec.size)), suffix)


__all__ = ["FIRST", "LAST", "LAYERS", "KTensor", "LayerUnsupported", "keras_layer"]
