"""Locate a layer's weights in the HDF5 data of a Keras file, in ``layer.weights`` order.

- legacy .h5 (Keras 2 and 3): ``model_weights/<top layer>/`` with a ``weight_names``
  attribute listing datasets such as ``conv2d/kernel:0`` (Keras 2) or ``conv2d/kernel``
  (Keras 3). Layers inside a nested model share the nested model's group; their weight
  names start with the inner layer's name.
- .keras: ``layers/<attr>/vars/<i>`` where ``<attr>`` is the snake-cased class name
  (``conv2d``, ``conv2d_1`` ...) and each ``vars`` group carries the layer's ``name``
  attribute; sub-layers (an RNN's ``cell``, attention's ``query_dense``) nest below.
- tf.keras SavedModel: the checkpoint's tensor bundle, located through the object graph
  (see :mod:`modelconv.importers.tf.keras_route`).

Datasets are returned unread: :class:`LayerWeights` checks each declared shape against
what the layer config requires before reading the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelconv.errors import ModelLoadError
from modelconv.fileio import FileView
from modelconv.importers.keras.config import snake_case
from modelconv.importers.keras.reader import KerasFile, attr_text, read_dataset

#: the order Keras creates sub-layers' variables in (``layer.weights`` order)
SUBLAYER_ORDER = {
    "MultiHeadAttention": ["query_dense", "key_dense", "value_dense", "output_dense"],
    "Bidirectional": ["forward_layer", "backward_layer"],
    "GroupQueryAttention": ["_query_dense", "_key_dense", "_value_dense", "_output_dense"],
}


class LayerWeights:
    """The weight datasets of one layer; read lazily with shape checks."""

    def __init__(self, datasets: Sequence[Any], names: Sequence[str], display: str, layer: str,
                 view: FileView | None = None):
        self._datasets = list(datasets)
        self.names = list(names)
        self._display = display
        self._layer = layer
        self._view = view

    def __len__(self) -> int:
        return len(self._datasets)

    def shape(self, i: int) -> tuple[int, ...]:
        """Declared shape of weight ``i`` (no data is read)."""
        self._check_index(i)
        return tuple(int(d) for d in self._datasets[i].shape)

    def get(self, i: int, expected: Sequence[int | None] | None = None) -> np.ndarray:
        """Weight ``i`` as float32/int array; ``expected`` dims (None = any) are checked first."""
        self._check_index(i)
        ds = self._datasets[i]
        if expected is not None:
            declared = self.shape(i)
            ok = len(declared) == len(expected) and all(
                e is None or int(e) == d for e, d in zip(expected, declared, strict=True))
            if not ok:
                raise ModelLoadError(
                    f"layer '{self._layer}': weight {self.names[i]!r} has shape {declared}, "
                    f"the layer config needs {tuple(expected)}", path=self._display)
        arr = read_dataset(ds, self._display, view=self._view)
        if arr.dtype.kind == "f" and arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        return arr

    def subset(self, keep: Sequence[int]) -> LayerWeights:
        """The weights at indices ``keep``, in that order (a wrapper's inner layer)."""
        return LayerWeights([self._datasets[i] for i in keep], [self.names[i] for i in keep],
                            self._display, self._layer, self._view)

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self._datasets):
            raise ModelLoadError(
                f"layer '{self._layer}' has {len(self._datasets)} weight(s) in the file, "
                f"its config needs at least {i + 1}", path=self._display)


def _attr_list(group: Any, key: str) -> list[str]:
    raw = group.attrs.get(key)
    if raw is None:
        return []
    return [attr_text(v, f"weight name in '{key}'") for v in np.asarray(raw).ravel()]


class WeightSource:
    """Finds the datasets of a layer given its path of names from the top model."""

    def __init__(self, kf: KerasFile, class_paths: dict[tuple[str, ...], str]):
        self.kf = kf
        self.class_paths = class_paths  # layer path -> class name (for .keras keys)
        self._keys: dict[str, dict[str, str]] = {}  # .keras: container -> layer name -> key

    def layer(self, path: tuple[str, ...]) -> LayerWeights:
        """The weights of the layer at ``path`` (names from the top model down)."""
        if self.kf.kind == "keras":
            datasets, names = self._zip_weights(path)
        elif self.kf.kind == "savedmodel":
            datasets, names = self.kf.h5.layer_datasets(path)
        else:
            datasets, names = self._h5_weights(path)
        view = self.kf.view if self.kf.kind != "savedmodel" else None
        return LayerWeights(datasets, names, self.kf.path, "/".join(path), view)

    # -- legacy .h5 -------------------------------------------------------------
    def _h5_weights(self, path: tuple[str, ...]) -> tuple[list[Any], list[str]]:
        root = self.kf.h5["model_weights"]
        if path[0] not in root:
            return [], []
        group = root[path[0]]
        names = _attr_list(group, "weight_names")
        if len(path) > 1:
            prefix = path[-1] + "/"
            names = [n for n in names if n.startswith(prefix) or f"/{prefix}" in n]
        out = []
        for n in names:
            if n not in group:
                raise ModelLoadError(f"weight '{n}' listed but missing in the HDF5 file",
                                     path=self.kf.path)
            out.append(group[n])
        return out, names

    # -- .keras -----------------------------------------------------------------
    def _zip_weights(self, path: tuple[str, ...]) -> tuple[list[Any], list[str]]:
        group = self.kf.h5
        for depth in range(len(path)):
            container = group.get("layers")
            if container is None:
                return [], []
            keys = self._keys.get(container.name)
            if keys is None:  # once per container: scanning it per layer is quadratic
                keys = self._keys[container.name] = layer_keys(container)
            key = keys.get(path[depth])
            if key is None:
                guess = snake_case(self.class_paths.get(path[: depth + 1], ""))
                key = guess if guess in container else None
            if key is None:
                return [], []
            group = container[key]
        out: list[Any] = []
        names: list[str] = []
        _collect_vars(group, self.class_paths.get(path, ""), "", out, names)
        return out, names


def layer_keys(container: Any) -> dict[str, str]:
    """Layer name -> member key of a .keras ``layers`` group (from each ``vars`` group's
    ``name`` attribute; the first member wins)."""
    keys: dict[str, str] = {}
    for key in container:
        vars_group = container[key].get("vars")
        name = vars_group.attrs.get("name") if vars_group is not None else None
        if isinstance(name, (bytes, str)):
            name = attr_text(name, f"layer name of '{key}'")
            keys.setdefault(name, str(key))
    return keys


def _collect_vars(group: Any, class_name: str, prefix: str, out: list[Any],
                  names: list[str]) -> None:
    vars_group = group.get("vars")
    if vars_group is not None:
        for i in sorted((k for k in vars_group), key=int):
            out.append(vars_group[i])
            names.append(f"{prefix}vars/{i}")
    children = [k for k in group if k != "vars"]
    order = SUBLAYER_ORDER.get(class_name, [])
    children.sort(key=lambda k: (order.index(k) if k in order else len(order), k))
    for child in children:
        _collect_vars(group[child], "", f"{prefix}{child}/", out, names)
