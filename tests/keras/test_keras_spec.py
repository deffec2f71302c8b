"""Consume or refuse: every Keras layer handler accounts for every config key, call
argument and constant operand; whatever it does not read is refused, naming it.

The defaults stored with the handlers are checked against Keras' own ``get_config()``
(Keras 3 here, Keras 2 in a tf_keras subprocess), so a new Keras option fails a test.
"""

from __future__ import annotations

import ast
import json
import os

from tests.paths import ROOT

os.environ.setdefault("KERAS_BACKEND", "torch")

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import onnx_ir as ir  # noqa: E402

from modelconv.errors import UnsupportedOpsError  # noqa: E402
from modelconv.importers.keras import import_keras  # noqa: E402
from modelconv.importers.keras.common import LAYERS, LayerUnsupported, layer_spec  # noqa: E402
from modelconv.importers.keras.config import parse_model  # noqa: E402
from modelconv.importers.keras.convert import check_layers  # noqa: E402
from modelconv.importers.keras.spec import (  # noqa: E402
    INPUT_LAYER,
    LayerSpec,
    call_refusals,
    config_refusals,
    normalise,
)
from modelconv.options import ConvertOptions  # noqa: E402
from modelconv.verification.runners import OnnxRuntimeRunner  # noqa: E402
from tests.keras_layer_defaults import (  # noqa: E402
    ALIASES,
    KERAS2_ONLY,
    KERAS3_ONLY,
    OPS,
    OPS_ONLY,
    build,
    build_op,
)

KERAS3_NAMES = sorted(n for n in LAYERS
                      if n not in ALIASES and n not in KERAS2_ONLY and n not in OPS_ONLY)
L = keras.layers


def spec(name: str) -> LayerSpec:
    """The spec registered with ``name``'s handler."""
    found = layer_spec(name)
    assert found is not None, name
    return found


def _unaccounted(name: str, cfg: dict[str, Any]) -> list[str]:
    """Keys of a default config the spec of ``name`` neither consumes nor defaults right."""
    sp = INPUT_LAYER if name == "InputLayer" else spec(name)
    out = [k for k in cfg if k not in sp.consumed()]
    out += [f"{k}: keras {cfg[k]!r} != stored {sp.defaults[k]!r}" for k in cfg
            if k in sp.defaults and normalise(cfg[k]) != normalise(sp.defaults[k])]
    return out + config_refusals(sp, cfg)


def test_every_registered_layer_has_a_spec_and_a_default_config_source() -> None:
    assert all(isinstance(LAYERS.check(name), LayerSpec) for name in LAYERS)
    for alias, name in ALIASES.items():
        assert spec(alias) is spec(name)
    assert set(LAYERS.keys()) >= KERAS2_ONLY


@pytest.mark.parametrize("name", [*KERAS3_NAMES, "InputLayer"])
def test_keras3_default_config_is_consumed(name: str) -> None:
    cfg = build(keras, name).get_config()
    assert _unaccounted(name, cfg) == []


@pytest.mark.parametrize("name", OPS)
def test_keras3_op_default_config_is_consumed(name: str) -> None:
    assert spec(f"ops.{name}").consts, f"{name} is a functional op: it takes constants"
    assert _unaccounted(f"ops.{name}", build_op(name).get_config()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="tf_keras subprocess")
def test_keras2_default_configs_are_consumed() -> None:
    pytest.importorskip("tf_keras")
    names = sorted(n for n in [*LAYERS, "InputLayer"]
                   if n not in ALIASES and n not in OPS_ONLY and n not in KERAS3_ONLY)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "tests.keras_layer_defaults", "tf_keras",
                           *names], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    configs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(configs) == set(names)
    bad = {name: _unaccounted(name, cfg) for name, cfg in configs.items()}
    assert {k: v for k, v in bad.items() if v} == {}


# ------------------------------------------------------------------ refusals by option


def _refusals(layer: Any) -> list[str]:
    return config_refusals(spec(type(layer).__name__), layer.get_config())


@pytest.mark.parametrize(("layer", "label"), [
    (lambda: L.Dense(3, lora_rank=4), "lora_rank=4"),
    (lambda: L.Conv2D(2, 3, lora_rank=2), "lora_rank=2"),
    (lambda: L.Dense(3, dtype="float16"), "dtype='float16'"),
    (lambda: L.Dense(3, dtype="bfloat16"), "dtype='bfloat16'"),
    (lambda: L.Conv2D(2, 3, data_format="channels_first"), "data_format='channels_first'"),
    (lambda: L.BatchNormalization(renorm=True), "renorm=True"),
    (lambda: L.LayerNormalization(rms_scaling=True), "rms_scaling=True"),
    (lambda: L.MultiHeadAttention(2, 3, use_gate=True), "use_gate=True"),
    (lambda: L.Resizing(4, 4, antialias=True), "antialias=True"),
    (lambda: L.Resizing(4, 4, crop_to_aspect_ratio=True), "crop_to_aspect_ratio=True"),
    (lambda: L.LSTM(2, stateful=True), "stateful=True"),
    (lambda: L.GRU(2, activation="gelu"), "activation='gelu'"),
    (lambda: L.Bidirectional(L.LSTM(2, return_state=True)), "layer.return_state=True"),
    (lambda: L.Bidirectional(L.LSTM(2, stateful=True)), "layer.stateful=True"),
    (lambda: L.Bidirectional(L.LSTM(2), merge_mode=None), "merge_mode=None"),
    (lambda: L.Flatten(data_format="channels_first"), "data_format='channels_first'"),
])
def test_non_default_option_is_refused(layer: Any, label: str) -> None:
    labels = _refusals(layer())
    assert label in labels


def test_quantized_dtype_policy_is_refused() -> None:
    dense = L.Dense(3)
    dense.build((None, 4))
    dense.quantize("int8")
    assert any(lb.startswith("dtype=QuantizedDTypePolicy") for lb in _refusals(dense))


@pytest.mark.parametrize(("cls", "key", "value"), [
    ("Embedding", "sparse", True),  # tf.keras option; not read
    ("Conv2D", "some_new_option", 1),
    ("Dense", "_keras_major", 2),  # the converter's own key, never from a file
])
def test_unknown_config_key_is_refused(cls: str, key: str, value: Any) -> None:
    assert spec(cls)({"name": "x", key: value}) == f"{key}={value!r}"  # the registry check
    assert f"{key}={value!r}" in config_refusals(spec(cls), {"name": "x", key: value})


@pytest.mark.parametrize(("cfg", "label"), [
    ({"batch_shape": [None, 3], "sparse": True}, "sparse=True"),
    ({"batch_shape": [None, 3], "ragged": True}, "ragged=True"),
    ({"batch_shape": [None, 3], "dtype": "string"}, "dtype='string'"),
    ({"batch_shape": [None, 3], "dtype": "bfloat16"}, "dtype='bfloat16'"),
])
def test_input_layer_options_are_refused(cfg: dict[str, Any], label: str) -> None:
    assert config_refusals(INPUT_LAYER, {"name": "x", "dtype": "float32", **cfg}) == [label]


def test_refusal_names_layer_key_and_value(tmp_path: Path) -> None:
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(3, lora_rank=2, name="adapted")(L.Dense(4)(inp)))
    path = tmp_path / "m.keras"
    model.save(path)
    with pytest.raises(UnsupportedOpsError) as info:
        import_keras(path, ConvertOptions())
    assert info.value.unsupported == {"Dense(lora_rank=2)": ["adapted"],
                                      "Dense(lora_alpha=2)": ["adapted"]}
    assert "Dense(lora_rank=2) x1 (at adapted)" in str(info.value)


# ------------------------------------------------------------- refusals by call argument


def test_call_arguments_consumed_or_refused() -> None:
    mha, dense, add = spec("MultiHeadAttention"), spec("Dense"), spec("Add")
    assert call_refusals(mha, ["value", "key"], {"use_causal_mask": True}, {}) == []
    assert call_refusals(mha, ["attention_mask"], {}, {}) == ["attention_mask=<tensor>"]
    assert call_refusals(dense, ["mask"], {}, {}) == ["mask=<tensor>"]
    assert call_refusals(dense, [], {"mask": None, "training": False}, {}) == []
    assert call_refusals(dense, [], {"foo": 2}, {}) == ["foo=2"]
    assert call_refusals(dense, [], {}, {1: 3.0}) == ["argument 1=3.0"]
    assert call_refusals(add, [], {}, {1: 3.0}) == []
    assert call_refusals(add, [], {}, {1: "same"}) == ["argument 1='same'"]
    assert call_refusals(add, [], {}, {}, stray=["x"]) == ["argument 'x'"]
    # tf.keras keeps an explicit training=True at inference; Keras 3's predict overrides it
    drop = spec("Dropout")
    assert call_refusals(drop, [], {"training": True}, {}, major=2) == ["training=True"]
    assert call_refusals(drop, [], {"training": True}, {}, major=3) == []


def test_tensor_kwarg_of_a_layer_is_refused(tmp_path: Path) -> None:
    x, h = keras.Input((5, 4)), keras.Input((3,))
    out = L.GRU(3, name="gru")(x, initial_state=h)
    path = tmp_path / "m.keras"
    keras.Model([x, h], out).save(path)
    with pytest.raises(UnsupportedOpsError) as info:
        import_keras(path, ConvertOptions())
    assert "GRU(initial_state=<tensor>)" in info.value.unsupported


def test_keras3_h5_op_constants_are_consumed(tmp_path: Path) -> None:
    """MobileNetV3's hard-swish (``x + 3.0``, ``x * (1/6)``) saved as Keras 3 .h5: the
    constants live in the inbound args of Add/Multiply entries without a module."""
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same")(inp)
    y = L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    z = keras.ops.maximum(3.0 - y, 0.25) / 2.0
    model = keras.Model(inp, L.Multiply()([x, z]))
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(0, 0.5, tuple(w.shape)).astype("float32"))
    feed = rng.normal(0, 1, (2, 6, 6, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(model(feed, training=False))
    for suffix in ("h5", "keras"):
        path = tmp_path / f"m.{suffix}"
        model.save(path)
        sm = import_keras(path, ConvertOptions())
        got = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString()).run([feed])[0]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=suffix)


def test_keras3_op_with_a_constant_where_the_layer_takes_none_is_refused(
        tmp_path: Path) -> None:
    inp = keras.Input((4,))
    path = tmp_path / "m.keras"
    keras.Model(inp, L.Dense(2)(inp)).save(path)
    from modelconv.importers.keras.reader import open_keras_file

    with open_keras_file(str(path)) as kf:
        cfg = kf.config
    dense = next(ly for ly in cfg["config"]["layers"] if ly["class_name"] == "Dense")
    dense["inbound_nodes"][0]["args"].append(0.5)
    with pytest.raises(UnsupportedOpsError) as info:
        check_layers(parse_model(cfg), str(path))
    assert list(info.value.unsupported) == ["Dense(argument 1=0.5)"]


def test_nested_model_call_argument_is_refused(tmp_path: Path) -> None:
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, L.Dense(2)(inner_in), name="inner")
    inp = keras.Input((4,))
    path = tmp_path / "m.keras"
    keras.Model(inp, inner(inp)).save(path)
    from modelconv.importers.keras.reader import open_keras_file

    with open_keras_file(str(path)) as kf:
        cfg = kf.config
    nested = next(ly for ly in cfg["config"]["layers"] if ly["name"] == "inner")
    nested["inbound_nodes"][0]["kwargs"] = {"foo": 3}
    with pytest.raises(UnsupportedOpsError) as info:
        check_layers(parse_model(cfg), str(path))
    assert list(info.value.unsupported) == [f"{nested['class_name']}(foo=3)"]


# ------------------------------------------------------------------- the handler signal


def test_handler_bug_surfaces_as_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only LayerUnsupported means "unsupported layer"; a TypeError is a bug in modelconv
    and reaches the caller as one (the CLI prints it as an internal error)."""
    inp = keras.Input((4,))
    path = tmp_path / "m.keras"
    keras.Model(inp, L.Dense(2, name="d")(inp)).save(path)

    def broken(*args: Any) -> Any:
        raise TypeError("handler bug")

    def refusing(*args: Any) -> Any:
        raise LayerUnsupported("units=2 (pretend)")

    handlers = LAYERS._handlers  # swap one handler for the test
    monkeypatch.setitem(handlers, "Dense", broken)
    with pytest.raises(TypeError, match="handler bug"):
        import_keras(path, ConvertOptions())
    for exc in (ValueError("v"), KeyError("k"), IndexError("i")):
        def raising(*args: Any, exc: Exception = exc) -> Any:
            raise exc

        monkeypatch.setitem(handlers, "Dense", raising)
        with pytest.raises(type(exc)):
            import_keras(path, ConvertOptions())
    monkeypatch.setitem(handlers, "Dense", refusing)
    with pytest.raises(UnsupportedOpsError) as info:
        import_keras(path, ConvertOptions())
    assert info.value.unsupported == {"Dense(units=2 (pretend))": ["d"]}


def test_handlers_signal_only_with_layer_unsupported() -> None:
    """No handler module raises ValueError/KeyError/IndexError on purpose."""
    folder = ROOT / "modelconv" / "importers" / "keras"
    found = []
    for path in [*sorted(folder.glob("layers_*.py")), folder / "common.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                call = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = getattr(call, "id", "")
                if name in ("ValueError", "KeyError", "IndexError", "TypeError"):
                    found.append(f"{path.name}:{node.lineno} {name}")
    assert found == []


def test_missing_required_key_is_a_load_error(tmp_path: Path) -> None:
    from modelconv.errors import ModelLoadError
    from modelconv.importers.keras.convert import _Converter
    from modelconv.importers.keras.reader import open_keras_file

    inp = keras.Input((4,))
    path = tmp_path / "m.keras"
    keras.Model(inp, L.Dense(2, name="d")(inp)).save(path)
    with open_keras_file(str(path)) as kf:
        graph = parse_model(kf.config)
        del graph.layer("d").config["units"]
        with pytest.raises(ModelLoadError, match="'d' has no 'units'"):
            _Converter(kf, graph).build()
