"""keras.ops calls saved as operation nodes of a functional model: every operation class of
``keras.ops`` is converted or refused with a reason, and each converted one is checked
against Keras (a declarative table; several ops per saved model to keep the test short)."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil

os.environ.setdefault("KERAS_BACKEND", "torch")

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import onnx_ir as ir  # noqa: E402

from modelconv.errors import UnsupportedOpsError  # noqa: E402
from modelconv.importers.keras import import_keras  # noqa: E402
from modelconv.importers.keras.common import LAYERS  # noqa: E402
from modelconv.importers.keras.refused_ops import REFUSED_OPS  # noqa: E402
from modelconv.options import ConvertOptions  # noqa: E402
from modelconv.verification.runners import OnnxRuntimeRunner  # noqa: E402
from tests.keras.test_keras_layers import litert  # noqa: E402, F401  (fixture)

K = keras.ops


def operation_classes() -> dict[str, str]:
    """Every Operation subclass the ``keras.ops`` modules define -> its module."""
    from keras.src import ops as src_ops
    from keras.src.ops.operation import Operation

    out = {}
    for info in pkgutil.iter_modules(src_ops.__path__):
        if info.name.endswith("_test"):
            continue
        module = importlib.import_module(f"keras.src.ops.{info.name}")
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Operation) and obj is not Operation \
                    and obj.__module__ == module.__name__:
                out[name] = module.__name__
    return out


HANDLED = {k.removeprefix("ops.") for k in LAYERS if k.startswith("ops.")}


def test_every_keras_operation_is_handled_or_refused() -> None:
    classes = operation_classes()
    neither = sorted(set(classes) - HANDLED - set(REFUSED_OPS))
    assert neither == [], f"keras.ops operations with no handler and no reason: {neither}"
    assert sorted(HANDLED & set(REFUSED_OPS)) == []
    assert sorted(set(REFUSED_OPS) - set(classes)) == []
    assert sorted(HANDLED - set(classes)) == []


def test_public_keras_ops_functions_map_to_operations() -> None:
    """The operation classes are what ``keras.ops``' public functions record: most public
    functions have a class of the same (CamelCase) name."""
    names = {n.replace("_", "").lower() for n in operation_classes()}
    public = [n for n, f in vars(K).items() if callable(f) and not n.startswith("_")]
    matched = [n for n in public if n.replace("_", "").lower() in names]
    assert len(matched) >= 0.9 * len(public)


def test_refused_operation_is_named(tmp_path: Any) -> None:
    x = keras.Input((4, 4))
    keras.Model(x, K.cumprod(x, axis=1)).save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedOpsError, match=r"ops\.Cumprod"):
        import_keras(tmp_path / "m.keras", ConvertOptions())


Fn = Callable[[dict[str, Any]], Any]


def _op(name: str) -> Any:
    from keras.src.ops import numpy as knp

    return getattr(knp, name)()


#: row name -> the ops applied to the inputs a (N, 5, 4), p (positive), c (N, 5, 4), k (int)
ROWS: dict[str, Fn] = {
    "add": lambda t: t["a"] + t["c"], "add_const": lambda t: K.add(t["a"], 2.5),
    "subtract": lambda t: 1.0 - t["a"], "multiply": lambda t: t["a"] * t["c"],
    "divide": lambda t: K.divide(t["a"], t["p"]), "true_divide": lambda t: t["a"] / t["p"],
    "power": lambda t: K.power(t["p"], 1.5), "maximum": lambda t: K.maximum(t["a"], t["c"]),
    "minimum": lambda t: K.minimum(t["a"], 0.1),
    "equal": lambda t: K.cast(K.equal(t["k"], 3), "float32"),
    "not_equal": lambda t: K.cast(K.not_equal(t["k"], 0), "float32"),
    "greater": lambda t: K.cast(K.greater(t["a"], t["c"]), "float32"),
    "greater_equal": lambda t: K.cast(K.greater_equal(t["a"], 0.0), "float32"),
    "less": lambda t: K.cast(K.less(t["a"], t["c"]), "float32"),
    "less_equal": lambda t: K.cast(K.less_equal(t["a"], 0.2), "float32"),
    "logical": lambda t: K.cast(K.logical_xor(K.logical_and(t["a"] > 0, t["c"] > 0),
                                              K.logical_or(t["a"] > 1, K.logical_not(
                                                  t["c"] > -1))), "float32"),
    "floor_divide": lambda t: K.floor_divide(t["a"], 0.3),
    "mod": lambda t: K.mod(t["a"], 0.7),
    "abs": lambda t: _op("Abs")(t["a"]),  # a class no public function uses
    "absolute": lambda t: K.absolute(t["a"]),
    "negative": lambda t: K.negative(t["a"]), "exp": lambda t: K.exp(t["a"]),
    "log": lambda t: K.log(t["p"]), "sqrt": lambda t: K.sqrt(t["p"]),
    "rsqrt": lambda t: K.rsqrt(t["p"]), "square": lambda t: K.square(t["a"]),
    "sin": lambda t: K.sin(t["a"]), "cos": lambda t: K.cos(t["a"]),
    "tan": lambda t: K.tan(t["a"] * 0.5), "tanh": lambda t: K.tanh(t["a"]),
    "sigmoid": lambda t: K.sigmoid(t["a"]), "relu": lambda t: K.relu(t["a"]),
    "relu6": lambda t: K.relu6(t["a"] * 4), "gelu": lambda t: K.gelu(t["a"]),
    "gelu_exact": lambda t: K.gelu(t["a"], approximate=False),
    "silu": lambda t: K.silu(t["a"]), "softplus": lambda t: K.softplus(t["a"]),
    "softsign": lambda t: K.softsign(t["a"]), "elu": lambda t: K.elu(t["a"], 0.5),
    "selu": lambda t: K.selu(t["a"]), "celu": lambda t: K.celu(t["a"], 0.7),
    "leaky_relu": lambda t: K.leaky_relu(t["a"], 0.1),
    "hard_sigmoid": lambda t: K.hard_sigmoid(t["a"] * 3),
    "hard_silu": lambda t: K.hard_silu(t["a"] * 3),
    "log_sigmoid": lambda t: K.log_sigmoid(t["a"]),
    "floor": lambda t: K.floor(t["a"] * 3), "ceil": lambda t: K.ceil(t["a"] * 3),
    "round": lambda t: K.round(t["a"] * 3), "sign": lambda t: K.sign(t["a"]),
    "reciprocal": lambda t: K.reciprocal(t["p"]), "erf": lambda t: K.erf(t["a"]),
    "log1p": lambda t: K.log1p(t["p"]), "expm1": lambda t: K.expm1(t["a"]),
    "stop_gradient": lambda t: K.stop_gradient(t["a"]), "copy": lambda t: K.copy(t["a"]),
    "clip": lambda t: K.clip(t["a"], -0.5, 0.5),
    "cast_int": lambda t: K.cast(K.cast(t["a"] * 4, "int32"), "float32"),
    "convert_to_tensor": lambda t: K.convert_to_tensor(t["a"]) * 2.0,
    "zeros_like": lambda t: K.zeros_like(t["a"]) + t["c"],
    "ones_like": lambda t: K.ones_like(t["a"]) * t["c"],
    "where": lambda t: K.where(t["a"] > 0, t["a"], t["c"]),
    "expand_dims": lambda t: K.expand_dims(t["a"], 1),
    "squeeze": lambda t: K.squeeze(K.expand_dims(t["a"], -1), -1),
    "reshape": lambda t: K.reshape(t["a"], (-1, 20)),
    "transpose": lambda t: K.transpose(t["a"], (0, 2, 1)),
    "swapaxes": lambda t: K.swapaxes(t["a"], 1, 2),
    "concatenate": lambda t: K.concatenate([t["a"], t["c"]], axis=1),
    "stack": lambda t: K.stack([t["a"], t["c"]], axis=-1),
    "broadcast_to": lambda t: K.broadcast_to(K.sum(t["a"], axis=(0, 1)), (3, 4)),
    "tile": lambda t: K.tile(t["a"], (1, 2, 1)),
    "sum": lambda t: K.sum(t["a"], axis=1), "mean": lambda t: K.mean(t["a"], axis=-1),
    "max": lambda t: K.max(t["a"], axis=1, keepdims=True),
    "min": lambda t: K.min(t["a"], axis=(1, 2)),
    "amax": lambda t: K.amax(t["a"], axis=1), "amin": lambda t: K.amin(t["a"], axis=2),
    "prod": lambda t: K.prod(t["p"], axis=1), "mean_all": lambda t: K.mean(t["a"]),
    "any_all": lambda t: K.cast(K.logical_and(K.any(t["a"] > 1, axis=-1),
                                              K.all(t["a"] > -1, axis=-1)), "float32"),
    "logsumexp": lambda t: K.logsumexp(t["a"], axis=1),
    "argmax": lambda t: K.cast(K.argmax(t["a"], axis=-1), "float32"),
    "argmin": lambda t: K.cast(K.argmin(t["a"], axis=1), "float32"),
    "matmul": lambda t: K.matmul(t["a"], K.transpose(t["c"], (0, 2, 1))),
    "softmax": lambda t: K.softmax(t["a"], axis=1),
    "log_softmax": lambda t: K.log_softmax(t["a"], axis=-1),
    "get_item_int": lambda t: t["a"][:, 1],
    "get_item_slices": lambda t: t["a"][:, 0:4:2, None, ...],
    "get_item_ellipsis": lambda t: t["c"][..., -1][:, None, 1:3, None],
    "get_item_first": lambda t: t["a"][0],
    "mask_plumbing": lambda t: K.cast(K.logical_or(
        K.expand_dims(K.any(K.not_equal(K.expand_dims(t["k"], -1), 0), axis=-1), -1),
        K.zeros_like(K.expand_dims(K.not_equal(t["k"], 0), -1))), "float32"),
}
CHUNK = 12
CHUNKS = [sorted(ROWS)[i:i + CHUNK] for i in range(0, len(ROWS), CHUNK)]
#: chunks also run through TFLite (LiteRT) — those whose ops all have TFLite kernels
TFLITE_CHUNKS = list(range(len(CHUNKS)))


def _model(rows: list[str]) -> Any:
    ins = {"a": keras.Input((5, 4), name="a"), "p": keras.Input((5, 4), name="p"),
           "c": keras.Input((5, 4), name="c"), "k": keras.Input((5,), dtype="int32", name="k")}
    return keras.Model(list(ins.values()), [ROWS[r](ins) for r in rows])


def _feeds(batch: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (batch, 5, 4)).astype("float32")
    p = rng.uniform(0.5, 2.0, (batch, 5, 4)).astype("float32")
    c = rng.normal(0, 1, (batch, 5, 4)).astype("float32")
    k = rng.integers(0, 5, (batch, 5)).astype("int32")
    return [a, p, c, k]


def _reference(model: Any, feeds: list[np.ndarray]) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(o) for o in model(feeds, training=False)]


def _compare(rows: list[str], got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for row, g, w in zip(rows, got, want, strict=True):
        assert g.shape == w.shape, row
        np.testing.assert_allclose(g, w, atol=1e-4 * max(1.0, float(np.abs(w).max())),
                                   rtol=0, err_msg=row)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("chunk", range(len(CHUNKS)))
def test_ops_table_to_onnx(chunk: int, fmt: str, tmp_path: Any) -> None:
    rows = CHUNKS[chunk]
    model = _model(rows)
    path = tmp_path / f"m.{fmt}"
    model.save(path)
    feeds = _feeds()
    sm = import_keras(path, ConvertOptions())
    got = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString()).run(feeds)
    _compare(rows, got, _reference(model, feeds))


def test_ops_table_covers_every_handled_operation(tmp_path: Any) -> None:
    import json

    seen: set[str] = set()
    for rows in CHUNKS:
        cfg = json.loads(json.dumps(_model(rows).get_config()))
        seen |= {layer["class_name"] for layer in cfg["layers"]
                 if str(layer.get("module", "")).startswith("keras.src.ops")}
    assert sorted(HANDLED - seen) == []


@pytest.mark.parametrize("chunk", TFLITE_CHUNKS)
def test_ops_table_to_tflite(chunk: int, tmp_path: Any, litert: Any) -> None:  # noqa: F811
    from modelconv.api import convert

    rows = CHUNKS[chunk]
    model = _model(rows)
    model.save(tmp_path / "m.keras")
    feeds = _feeds(batch=1)
    convert(str(tmp_path / "m.keras"), str(tmp_path / "m.tflite"), verify=False)
    names = [t.name for t in import_keras(tmp_path / "m.keras",
                                          ConvertOptions()).model.graph.inputs]
    out = litert.run((tmp_path / "m.tflite").read_bytes(),
                     dict(zip(names, feeds, strict=True)))
    assert out.status == "ok", out.message
    _compare(rows, out.outputs, _reference(model, feeds))
