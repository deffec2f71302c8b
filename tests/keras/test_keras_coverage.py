"""Every layer class Keras 3 exports in ``keras.layers`` is converted or refused with a
reason: a new Keras layer fails this test until it gets a handler or a REFUSED entry."""

from __future__ import annotations

import inspect
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import pytest

keras = pytest.importorskip("keras")

from modelconv.importers.keras.common import LAYERS  # noqa: E402
from modelconv.importers.keras.refused import REFUSED  # noqa: E402
from modelconv.support import support_markdown, support_matrix  # noqa: E402

EXPORTED = sorted(name for name, obj in vars(keras.layers).items()
                  if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer))


def test_every_exported_keras_layer_is_handled_or_refused() -> None:
    handled = set(LAYERS.keys())
    neither = [n for n in EXPORTED if n not in handled and n not in REFUSED]
    assert neither == [], f"keras.layers classes with no handler and no REFUSED reason: {neither}"


def test_refused_table_is_current_and_disjoint() -> None:
    assert sorted(set(REFUSED) & set(LAYERS.keys())) == []
    assert sorted(set(REFUSED) - set(EXPORTED)) == []
    assert all(reason.strip() for reason in REFUSED.values())


def test_refused_layers_are_shown_with_their_reason() -> None:
    entry = next(v for k, v in support_matrix().items() if "Keras" in k)
    assert entry["refused"] == REFUSED
    doc = support_markdown()
    assert f"| `Hashing` | {REFUSED['Hashing']} |" in doc
    assert "| `Lambda` |" in doc


L = keras.layers


def _refusal(model: object, tmp_path: object) -> str:
    from modelconv.errors import UnsupportedOpsError
    from modelconv.importers.keras import import_keras
    from modelconv.options import ConvertOptions

    path = f"{tmp_path}/m.keras"
    model.save(path)  # type: ignore[attr-defined]
    with pytest.raises(UnsupportedOpsError) as info:
        import_keras(path, ConvertOptions())
    return str(info.value)


@pytest.mark.parametrize(("build", "label"), [
    (lambda: _attn(L.Attention(), use_causal_mask=True), "use_causal_mask=True"),
    (lambda: _attn(L.AdditiveAttention(), return_attention_scores=True),
     "return_attention_scores=True"),
    (lambda: _seq((3, 4), L.TimeDistributed(L.Dense(2, lora_rank=1))),
     "TimeDistributed(layer.lora_rank=1)"),
    (lambda: _seq((3, 4, 5), L.TimeDistributed(L.LSTM(2))), "layer='LSTM'"),
    (lambda: _seq((6, 4), L.GroupNormalization(groups=2, axis=1)), "axis=1"),
    (lambda: _seq((4, 4), L.CenterCrop(2, 2)), "a rank-3 input"),
    (lambda: _seq((4, 3), L.EinsumDense("abc,bcd->abd", (4, 2))),
     "equation='abc,bcd->abd'"),
    (lambda: _seq((5,), L.IntegerLookup(vocabulary=[1, 2], output_mode="tf_idf",
                                        idf_weights=[1.0, 1.0]),
                  dtype="int32"), "output_mode='tf_idf'"),
    (lambda: _seq((5,), L.IntegerLookup(vocabulary=[1, 2], output_mode="count",
                                        mask_token=0), dtype="int32"), "mask_token=0"),
    (lambda: _seq((4, 3), L.RNN(L.StackedRNNCells([L.LSTMCell(2, activation="gelu")]))),
     "cell.cells[0].activation='gelu'"),
    (lambda: _seq((4, 3), L.SpectralNormalization(L.Dense(2, lora_rank=1))),
     "layer.lora_rank=1"),
])
def test_unsupported_variants_are_refused_by_name(build: object, label: str,
                                                  tmp_path: object) -> None:
    assert label in _refusal(build(), tmp_path)  # type: ignore[operator]


def _seq(shape: tuple[int, ...], *layers: object, dtype: str = "float32") -> object:
    x = inp = keras.Input(shape, dtype=dtype)
    for layer in layers:
        x = layer(x)  # type: ignore[operator]
    return keras.Model(inp, x)


def _attn(layer: object, **kwargs: object) -> object:
    q, v = keras.Input((4, 3)), keras.Input((5, 3))
    out = layer([q, v], **kwargs)  # type: ignore[operator]
    return keras.Model([q, v], out[0] if isinstance(out, tuple) else out)
