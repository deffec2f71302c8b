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
    assert f"| `EinsumDense` | {REFUSED['EinsumDense']} |" in doc
    assert "| `Lambda` |" in doc
