"""Build the Keras 2 (tf_keras) rows of the layer table and save each as ``NAME.h5`` with
``NAME.npz`` (``in:<i>`` inputs and ``out:<i>`` outputs on a fixed random batch of one).

Run as a script, in a process of its own (it imports TensorFlow)::

    python tests/builders/keras2_layers_build.py OUT_DIR NAME...

Imported by nothing: tests/keras/test_keras2_layers.py runs it and never imports TensorFlow.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def rows(keras: Any) -> dict[str, Callable[[], Any]]:
    """Row name -> builder of a small tf_keras model."""
    L = keras.layers

    def seq(shape: tuple[int, ...], *layers: Any, dtype: str = "float32") -> Any:
        x = inp = keras.Input(shape, dtype=dtype)
        for layer in layers:
            x = layer(x)
        return keras.Model(inp, x)

    def branches(shape: tuple[int, ...], *layers: Any) -> Any:
        inp = keras.Input(shape)
        return keras.Model(inp, [layer(inp) for layer in layers])

    return {
        "spectral_norm": lambda: branches((8, 8, 3), L.SpectralNormalization(L.Conv2D(3, 3)),
                                          L.SpectralNormalization(L.Dense(2, "tanh"))),
        "einsum_dense": lambda: branches(
            (6, 5), L.EinsumDense("abc,cd->abd", (None, 3), bias_axes="d"),
            L.EinsumDense("...b,bc->...c", 4), L.EinsumDense("abc,cde->abde", (None, 2, 3))),
        "center_crop": lambda: seq((8, 10, 3), L.CenterCrop(5, 6)),
        "random_crop": lambda: seq((8, 8, 3), L.RandomCrop(4, 4)),
        "integer_lookup": lambda: seq((5,), L.IntegerLookup(vocabulary=[3, 7, 9, 12],
                                                            num_oov_indices=2, mask_token=0),
                                      dtype="int64"),
        "conv_lstm1d": lambda: seq((3, 7, 2), L.ConvLSTM1D(3, 3, padding="same",
                                                           return_sequences=True)),
        "conv_lstm2d": lambda: seq((3, 6, 6, 2), L.ConvLSTM2D(3, 3, strides=2,
                                                              go_backwards=True)),
        "conv_lstm3d": lambda: seq((2, 4, 4, 3, 2), L.ConvLSTM3D(2, (2, 3, 1))),
        "rnn_cells": lambda: branches((6, 5), L.RNN(L.LSTMCell(3), return_sequences=True),
                                      L.RNN(L.GRUCell(2), go_backwards=True)),
        "rnn_stacked": lambda: seq((6, 5), L.RNN(L.StackedRNNCells(
            [L.LSTMCell(3), L.GRUCell(2), L.SimpleRNNCell(4)]), return_sequences=True)),
    }


def _randomize(model: Any, rng: np.random.Generator) -> None:
    for w in model.weights:
        w.assign(rng.normal(0, 0.5, tuple(w.shape)).astype(w.dtype.name))


def _feeds(model: Any, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for t in model.inputs:
        shape = [1 if d is None else d for d in t.shape]
        if t.dtype.is_integer:
            out.append(rng.integers(0, 20, shape).astype(t.dtype.name))
        else:
            out.append(rng.normal(0, 1, shape).astype("float32"))
    return out


def main(out: Path, names: list[str]) -> None:
    """Save each named row's model and reference in ``out``."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras as keras

    out.mkdir(parents=True, exist_ok=True)
    builders = rows(keras)
    for i, name in enumerate(names):
        keras.backend.clear_session()
        rng = np.random.default_rng(i)
        model = builders[name]()
        _randomize(model, rng)
        feeds = _feeds(model, rng)
        outs = model(feeds if len(feeds) > 1 else feeds[0], training=False)
        outs = outs if isinstance(outs, list | tuple) else [outs]
        arrays = {f"in:{k}": f for k, f in enumerate(feeds)}
        arrays.update({f"out:{k}": np.asarray(o) for k, o in enumerate(outs)})
        np.savez(out / f"{name}.npz", **arrays)  # type: ignore[arg-type]
        model.save(out / f"{name}.h5")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
