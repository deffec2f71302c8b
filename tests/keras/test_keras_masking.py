"""Keras masks end to end: Embedding(mask_zero=True) / Masking into RNNs, attention, pooling
and mask-keeping layers, converted from .keras and Keras 3 .h5 and compared with Keras on
inputs that hold padding (zeros at the tail and in the middle)."""

from __future__ import annotations

import inspect
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from modelconv.errors import UnsupportedOpsError  # noqa: E402
from modelconv.importers.keras import import_keras  # noqa: E402
from modelconv.importers.keras.masking import KEEP, MERGE_OR, REFUSES_MASK, TAKES_MASK  # noqa: E402
from modelconv.options import ConvertOptions  # noqa: E402
from tests.framework_free import assert_keras_import_loads_no_framework  # noqa: E402
from tests.keras.test_keras_layers import (  # noqa: E402
    convert_and_compare,
    litert,  # noqa: F401  (fixture)
    randomize,
)

L = keras.layers
T, VOCAB = 7, 20


def _tokens(body: Callable[[Any], Any]) -> Any:
    inp = keras.Input((T,), dtype="int32")
    return keras.Model(inp, body(L.Embedding(VOCAB, 6, mask_zero=True)(inp)))


def _masked(body: Callable[[Any], Any], value: float = 0.0) -> Any:
    inp = keras.Input((T, 4))
    return keras.Model(inp, body(L.Masking(value)(inp)))


def _self_attention(layer: Any) -> Callable[[Any], Any]:
    return lambda x: layer([L.Dense(6)(x), x])


def text_model() -> Any:
    """Done-when model: Embedding(mask_zero=True) + LSTM + AdditiveAttention."""
    inp = keras.Input((T,), dtype="int32")
    h = L.LSTM(6, return_sequences=True)(L.Embedding(VOCAB, 5, mask_zero=True)(inp))
    ctx = L.AdditiveAttention()([h, h])
    return keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling1D()(ctx)))


def sequence_model() -> Any:
    """Done-when model: Conv1D + GRU + TimeDistributed + Attention, masked by Masking
    (Conv1D drops the mask in Keras: its branch is the unmasked value)."""
    inp = keras.Input((T, 4))
    conv = L.Conv1D(6, 3, padding="same", activation="relu")(inp)
    steps = L.TimeDistributed(L.Dense(6))(L.Masking(0.0)(inp))
    g = L.GRU(6, return_sequences=True)(steps)
    ctx = L.Attention(use_scale=True)([g, conv])
    return keras.Model(inp, L.GlobalAveragePooling1D()(ctx))


CASES: dict[str, Callable[[], Any]] = {
    "text_model": text_model,
    "sequence_model": sequence_model,
    "lstm_last": lambda: _tokens(L.LSTM(5)),
    "lstm_seq": lambda: _tokens(L.LSTM(5, return_sequences=True)),
    "lstm_state": lambda: _tokens(lambda x: L.LSTM(4, return_state=True)(x)[2]),
    "lstm_back_seq": lambda: _tokens(L.LSTM(4, return_sequences=True, go_backwards=True)),
    "lstm_zero_out": lambda: _tokens(L.LSTM(4, return_sequences=True,
                                            zero_output_for_mask=True)),
    "gru_seq": lambda: _tokens(L.GRU(5, return_sequences=True)),
    "gru_reset_before": lambda: _tokens(L.GRU(4, reset_after=False)),
    "simple_rnn_back": lambda: _tokens(L.SimpleRNN(4, go_backwards=True)),
    "bidir_lstm_seq": lambda: _tokens(L.Bidirectional(L.LSTM(3, return_sequences=True))),
    "bidir_gru_last_sum": lambda: _tokens(L.Bidirectional(L.GRU(3), merge_mode="sum")),
    "masking_lstm": lambda: _masked(L.LSTM(4, return_sequences=True)),
    "masking_value_gru": lambda: _masked(L.GRU(3), value=0.5),
    "dense_keeps_mask": lambda: _tokens(lambda x: L.LSTM(3)(L.Dropout(0.1)(L.Dense(4)(x)))),
    "gap1d_masked": lambda: _tokens(L.GlobalAveragePooling1D()),
    "gap1d_after_lstm": lambda: _tokens(lambda x: L.GlobalAveragePooling1D()(
        L.LSTM(4, return_sequences=True)(x))),
    "gmp1d_ignores_mask": lambda: _tokens(L.GlobalMaxPooling1D()),
    "attention_masks": lambda: _tokens(_self_attention(L.Attention())),
    "attention_causal": lambda: _tokens(lambda x: L.Attention()([x, x],
                                                               use_causal_mask=True)),
    "additive_attention": lambda: _tokens(_self_attention(L.AdditiveAttention())),
    "mha_masked": lambda: _tokens(lambda x: L.MultiHeadAttention(2, 3)(x, x)),
    "mha_causal": lambda: _tokens(lambda x: L.MultiHeadAttention(2, 3)(
        x, x, use_causal_mask=True)),
    "time_distributed": lambda: _tokens(lambda x: L.LSTM(3)(L.TimeDistributed(L.Dense(4))(x))),
    "add_masks": lambda: _tokens(lambda x: L.LSTM(3)(L.Add()([x, L.Dense(6)(x)]))),
    "concat_masks": lambda: _tokens(lambda x: L.GRU(3)(L.Concatenate()([x, L.Dense(2)(x)]))),
    "conv_ends_mask": lambda: _tokens(lambda x: L.LSTM(3)(L.Conv1D(4, 3, padding="same")(x))),
}
H5 = ["text_model", "sequence_model", "lstm_seq", "bidir_lstm_seq", "masking_lstm",
      "additive_attention", "mha_masked", "gap1d_after_lstm", "gru_reset_before"]
TFLITE = ["text_model", "sequence_model", "lstm_seq", "gru_seq", "bidir_lstm_seq",
          "masking_lstm", "attention_masks", "additive_attention", "mha_masked",
          "gap1d_masked", "lstm_back_seq"]


def padded_feeds(model: Any, batch: int = 3, seed: int = 1) -> list[np.ndarray]:
    """Inputs with padding: sample i ends with i+1 padded steps, sample 0 has a hole."""
    rng = np.random.default_rng(seed)
    feeds = []
    for t in model.inputs:
        shape = [batch if d is None else d for d in t.shape]
        if "int" in str(t.dtype):
            x = rng.integers(1, VOCAB, shape).astype("int32")
            pad = 0
        else:
            x = rng.normal(0, 1, shape).astype("float32")
            pad = next(layer.mask_value for layer in model.layers
                       if isinstance(layer, L.Masking))
        for i in range(batch):
            x[i, shape[1] - 1 - i:] = pad
        x[0, 2] = pad
        feeds.append(x)
    return feeds


@pytest.mark.parametrize("name", sorted(CASES))
def test_masked_keras_format(name: str, tmp_path: Any) -> None:
    model = CASES[name]()
    randomize(model)
    convert_and_compare(model, str(tmp_path / "m.keras"), padded_feeds(model))


@pytest.mark.parametrize("name", H5)
def test_masked_h5_format(name: str, tmp_path: Any) -> None:
    model = CASES[name]()
    randomize(model)
    convert_and_compare(model, str(tmp_path / "m.h5"), padded_feeds(model))


@pytest.mark.parametrize("name", TFLITE)
def test_masked_to_tflite(name: str, tmp_path: Any, litert: Any) -> None:  # noqa: F811
    from modelconv.api import convert

    model = CASES[name]()
    randomize(model)
    feeds = padded_feeds(model, batch=1)
    model.save(str(tmp_path / "m.keras"))
    want = keras.ops.convert_to_numpy(model(feeds[0], training=False))
    dst = tmp_path / "m.tflite"
    convert(str(tmp_path / "m.keras"), str(dst), verify=False)
    names = [t.name for t in import_keras(str(tmp_path / "m.keras"),
                                          ConvertOptions()).model.graph.inputs]
    out = litert.run(dst.read_bytes(), dict(zip(names, feeds, strict=True)))
    assert out.status == "ok", out.message
    np.testing.assert_allclose(out.outputs[0], want,
                               atol=1e-4 * max(float(np.abs(want).max()), 1.0), rtol=0)


def test_mask_the_layer_cannot_honour_is_refused(tmp_path: Any) -> None:
    """A mask reaching a layer whose call takes one that modelconv does not apply."""
    inp = keras.Input((T,), dtype="int32")
    x = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
    out = L.TimeDistributed(L.Softmax())(x)
    keras.Model(inp, out).save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedOpsError) as info:
        import_keras(tmp_path / "m.keras", ConvertOptions())
    assert "TimeDistributed" in str(info.value) and "mask" in str(info.value)


def test_masked_softmax_is_refused(tmp_path: Any) -> None:
    inp = keras.Input((T,), dtype="int32")
    out = L.Softmax()(L.Embedding(VOCAB, T, mask_zero=True)(inp))
    keras.Model(inp, out).save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedOpsError, match=r"Softmax\(a mask"):
        import_keras(tmp_path / "m.keras", ConvertOptions())


def test_masked_rnn_without_fixed_length_is_refused(tmp_path: Any) -> None:
    inp = keras.Input((None,), dtype="int32")
    out = L.LSTM(3)(L.Embedding(VOCAB, 4, mask_zero=True)(inp))
    keras.Model(inp, out).save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedOpsError, match=r"LSTM.*fixed number of time steps"):
        import_keras(tmp_path / "m.keras", ConvertOptions())


def _supports_masking(cls: type) -> bool:
    """Whether Keras' ``cls`` keeps or computes a mask (read from its source)."""
    from keras.src.utils.python_utils import is_default

    if not is_default(cls.compute_mask):
        return True
    return any("supports_masking = True" in inspect.getsource(k.__init__)
               for k in cls.__mro__ if "__init__" in vars(k) and k.__module__.startswith(
                   "keras") and k is not keras.layers.Layer)


def test_mask_tables_match_keras() -> None:
    """KEEP: supports masking with the default compute_mask; TAKES_MASK: call takes a mask."""
    from keras.src.utils.python_utils import is_default

    handled = set(__import__("modelconv.importers.keras.common",
                             fromlist=["LAYERS"]).LAYERS.keys())
    for cls in vars(L).values():
        name = getattr(cls, "__name__", "")  # what a file saves (aliases share a class)
        if not inspect.isclass(cls) or not issubclass(cls, L.Layer) or name not in handled:
            continue
        keeps = _supports_masking(cls) and is_default(cls.compute_mask)
        if name in KEEP:
            assert keeps, f"{name} does not keep its input's mask in Keras"
        elif keeps:  # rules of their own in output_masks that give the same mask
            # a class refusing any mask that reaches it never passes one on
            assert name in MERGE_OR | {"MultiHeadAttention"} | set(REFUSES_MASK), \
                f"{name} keeps the mask"
        takes = "mask" in inspect.signature(cls.call).parameters or \
            name == "MultiHeadAttention"
        if takes:
            assert name in TAKES_MASK or name in REFUSES_MASK, \
                f"{name}.call takes a mask: honour it or refuse it"


def test_verifier_generates_padded_token_ids_and_verifies(tmp_path: Any) -> None:
    """The verifier's own inputs for a masked text model end with padding (id 0), and
    convert() verifies the ONNX file against Keras on them."""
    from modelconv.api import convert
    from modelconv.ir.info import graph_input_specs
    from modelconv.verification.inputs import generate_inputs

    model = text_model()
    randomize(model)
    model.save(tmp_path / "m.keras")
    sm = import_keras(tmp_path / "m.keras", ConvertOptions())
    specs = graph_input_specs(sm.model.graph)
    ids = generate_inputs(specs, seed=0, batch_size=4, int_ranges=sm.int_ranges)[0]
    assert ids.shape == (4, T)
    assert (ids[:, -1] == 0).all() and (ids[:, 0] != 0).all()
    assert ids.max() < VOCAB
    result = convert(str(tmp_path / "m.keras"), str(tmp_path / "m.onnx"))
    assert result.report is not None and result.report.passed and not result.report.skipped


def test_verifier_pads_masking_inputs() -> None:
    from modelconv.ir.info import TensorSpec
    from modelconv.verification.inputs import generate_inputs

    spec = TensorSpec("x", "float32", (2, T, 3))
    x = generate_inputs([spec], seed=1, int_ranges={"x:padded": (0, 0)})[0]
    assert (x[:, -1, :] == 0).all() and (x[:, 0, :] != 0).all()


def test_masked_conversion_imports_no_framework(tmp_path: Any) -> None:
    """Masks and keras.ops nodes convert without TensorFlow, Keras or torch imported."""

    files = []
    for name in ("text_model", "sequence_model"):
        model = CASES[name]()
        for ext in ("keras", "h5"):
            model.save(tmp_path / f"{name}.{ext}")
            files.append(str(tmp_path / f"{name}.{ext}"))
    assert_keras_import_loads_no_framework(files)
