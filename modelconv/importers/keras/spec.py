"""Consume or refuse: what each Keras layer handler reads from a layer's config and call.

Every handler is registered with a :class:`LayerSpec` (``@keras_layer(..., reads=...,
inert=..., defaults=...)``), which is the registry's ``check`` for its classes. Before
anything is converted, the converter compares each layer of the model with its spec
(:func:`config_refusals`, :func:`call_refusals`):

- a config key the handler ``reads`` is interpreted by the handler (a value it cannot
  express makes it raise :class:`LayerUnsupported`);
- an ``inert`` key has no effect on inference (initializers, regularizers, constraints,
  seeds, training-time rates, execution hints);
- a ``defaults`` key is not read: its value must be the Keras default stored here;
- any other key, or a key off its default, is refused, naming the layer, key and value.

The same holds for what a call passes: positional constants (``x + 3.0``), tensor keyword
arguments and other keyword arguments are consumed only where the spec says so.
The defaults are stored with the handlers (converting never imports Keras);
``tests/keras/test_keras_spec.py`` derives them again from Keras' own ``get_config()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelconv.errors import ModelLoadError


class LayerUnsupported(Exception):
    """Raised by a handler: this variant of the layer cannot be converted (the message
    says which option or value). Any other exception from a handler is a bug."""


class LayerConfig(dict[str, Any]):
    """A layer's config dict; a missing required key is a broken file, not a bug."""

    def __init__(self, data: Mapping[str, Any], layer: str, path: str | None = None):
        super().__init__(data)
        self.layer = layer
        self.path = path

    def __missing__(self, key: str) -> Any:
        raise ModelLoadError(f"layer '{self.layer}' has no '{key}' in its config",
                             path=self.path)


#: keys every layer config may carry: its name, trainability, the input shape a first
#: layer of a Sequential model declares (read by the config parser), the dtype policy
#: (checked by :func:`dtype_refusal`)
COMMON_KEYS = frozenset({"name", "trainable", "dtype", "batch_input_shape", "batch_shape"})
#: dtype policies converted as float32 (mixed precision keeps float32 variables)
FLOAT_POLICIES = frozenset({"float32", "mixed_float16", "mixed_bfloat16"})
#: keys injected by the converter, never from the file
INTERNAL_KEYS = frozenset({"_keras_major", "_call_kwargs", "_masks", "_shapes"})


@dataclass(frozen=True)
class LayerSpec:
    """What one handler consumes (see the module docstring)."""

    reads: frozenset[str] = frozenset()
    inert: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: tensor keyword arguments taken as extra inputs, in this order
    kw_inputs: tuple[str, ...] = ()
    #: non-tensor keyword arguments of a call the handler reads (``_call_kwargs``)
    call_kwargs: frozenset[str] = frozenset()
    #: constant positional operands (``x + 3.0``) become constant input tensors
    consts: bool = False
    #: extra refusals for values of read keys, found before conversion
    check: Callable[[Mapping[str, Any]], list[str]] | None = None
    #: the ``dtype`` key is a layer's dtype policy (see :func:`dtype_refusal`)
    policy: bool = True

    def consumed(self) -> frozenset[str]:
        """Every config key this spec accounts for (read, inert or defaulted)."""
        return self.reads | self.inert | frozenset(self.defaults) | COMMON_KEYS

    def __call__(self, cfg: Mapping[str, Any]) -> str | None:
        """The registry's check contract: why a layer config cannot be converted (the
        refused entries, joined), or None. :func:`config_refusals` gives them one by one."""
        return "; ".join(config_refusals(self, cfg)) or None


def make_spec(reads: Iterable[str] = (), inert: Iterable[str] = (),
              defaults: Mapping[str, Any] | None = None, kw_inputs: Iterable[str] = (),
              call_kwargs: Iterable[str] = (), consts: bool = False,
              check: Callable[[Mapping[str, Any]], list[str]] | None = None) -> LayerSpec:
    """A :class:`LayerSpec` from plain iterables (the ``@keras_layer`` keywords).

    Args:
        reads: config keys the handler interprets.
        inert: config keys without effect on inference.
        defaults: config keys the handler does not read, with the only accepted value.
        kw_inputs: tensor keyword arguments consumed as inputs, in input order.
        call_kwargs: other keyword arguments the handler reads.
        consts: whether constant positional operands are consumed.
        check: extra refusals for read values (returns labels such as ``"mode='x'"``).

    Returns:
        The frozen spec.

    Raises:
        ValueError: a key is declared in two categories (a registration bug).
    """
    r, i, d = frozenset(reads), frozenset(inert), dict(defaults or {})
    both = (r & i) | (r & set(d)) | (i & set(d))
    if both:
        raise ValueError(f"config keys declared twice: {sorted(both)}")
    return LayerSpec(r, i, d, tuple(kw_inputs), frozenset(call_kwargs), consts, check)


def normalise(value: Any) -> Any:
    """A config value as JSON would hold it (tuples as lists), for comparisons."""
    if isinstance(value, tuple | list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def show(value: Any, limit: int = 60) -> str:
    """A short repr of a config value for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def dtype_refusal(spec: Any) -> str | None:
    """Why a layer's dtype policy is refused, or None when it converts as float32."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        cls = spec.get("class_name")
        inner = spec.get("config")
        name = inner.get("name") if isinstance(inner, dict) else None
        if cls not in ("DTypePolicy", "Policy", "FloatDTypePolicy") or name is None:
            return f"dtype={cls or show(spec)}"
    else:
        name = spec
    return None if name in FLOAT_POLICIES else f"dtype={show(name)}"


def config_refusals(spec: LayerSpec, cfg: Mapping[str, Any]) -> list[str]:
    """Labels (``key=value``) of the config entries ``spec`` does not consume."""
    out = []
    known = spec.consumed()
    for key, value in cfg.items():
        off_default = key in spec.defaults and normalise(value) != normalise(
            spec.defaults[key])
        if key in INTERNAL_KEYS or key not in known or off_default:
            out.append(f"{key}={show(value)}")
    reason = dtype_refusal(cfg.get("dtype")) if spec.policy else None
    if reason is not None:
        out.append(reason)
    if spec.check is not None:
        out.extend(spec.check(cfg))
    return out


#: dtypes a model input may have (the IR input gets the same numpy dtype)
INPUT_DTYPES = frozenset({"float16", "float32", "float64", "bool", "int8", "int16", "int32",
                          "int64", "uint8", "uint16", "uint32", "uint64"})


def _input_dtype(cfg: Mapping[str, Any]) -> list[str]:
    name = cfg.get("dtype")
    if isinstance(name, dict):
        name = (name.get("config") or {}).get("name")
    ok = name is None or str(name).startswith("mixed_") or name in INPUT_DTYPES
    return [] if ok else [f"dtype={show(name)}"]


#: a model input (``InputLayer``, no handler): sparse, ragged and optional inputs are refused
INPUT_LAYER = LayerSpec(reads=frozenset({"batch_shape", "batch_input_shape", "dtype"}),
                        defaults={"sparse": False, "ragged": False, "optional": False},
                        check=_input_dtype, policy=False)


#: a nested model's call: tensors only (its config is the model's own graph)
NESTED_MODEL = LayerSpec()


def is_number_tree(x: Any) -> bool:
    """A number or a (nested) list of numbers: a constant operand."""
    if isinstance(x, bool | int | float):
        return True
    return isinstance(x, list) and bool(x) and all(is_number_tree(v) for v in x)


def call_refusals(spec: LayerSpec, kw_tensors: Iterable[str], kwargs: Mapping[str, Any],
                  consts: Mapping[int, Any], stray: Iterable[Any] = (),
                  major: int = 3) -> list[str]:
    """Labels of what one call passes that ``spec`` does not consume.

    A ``training`` argument recorded in the graph is what Keras 3's ``predict()`` and
    ``model(x, training=False)`` override (its preprocessing layers record
    ``training=True`` by default); tf.keras keeps an explicit ``training=True`` at
    inference (Monte-Carlo dropout), so a Keras 2 file with one is refused.
    """
    out = [f"{key}=<tensor>" for key in kw_tensors if key not in spec.kw_inputs]
    for key, value in kwargs.items():
        if key in spec.call_kwargs or value is None:
            continue
        if key == "training" and (value is False or major >= 3):
            continue
        out.append(f"{key}={show(value)}")
    for pos, value in sorted(consts.items()):
        if not spec.consts or not is_number_tree(value):
            out.append(f"argument {pos}={show(value)}")
    out.extend(f"argument {show(value)}" for value in stray)
    return out
