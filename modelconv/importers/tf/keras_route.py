"""The Keras route for tf.keras / tf_keras SavedModels (format ``savedmodel-keras``, no TensorFlow).

A SavedModel written by tf.keras carries ``keras_metadata.pb`` with the model's Keras config
(:mod:`modelconv.importers.tf.files.object_graph`). When that config is a layer graph
(Functional/Sequential) and the ``serving_default`` signature is asked for, the model is
converted by the Keras layer handlers (the one deliberate edge from ``importers.tf`` to
``importers.keras``), its weights read from the checkpoint's tensor bundle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import (
    ModelconvError,
    ModelLoadError,
    UnsafeModelError,
    UnsupportedFormatError,
    UnsupportedOpsError,
)
from modelconv.formats import SourceModel
from modelconv.importers.keras.config import parse_model
from modelconv.importers.keras.convert import check_layers, convert_keras_file
from modelconv.importers.keras.reader import MAX_CONFIG_BYTES, KerasFile
from modelconv.importers.tf.files.bundle import (
    OBJECT_GRAPH_KEY,
    TF_DTYPES,
    BundleEntry,
    TensorBundle,
)
from modelconv.importers.tf.files.object_graph import (
    KERAS_METADATA,
    KerasMetadata,
    ObjectGraph,
    read_keras_metadata,
)
from modelconv.importers.tf.files.saved_model import read_saved_model
from modelconv.importers.tf.graph.route import native_source
from modelconv.importers.tf.safety import refuse_unsafe_ops
from modelconv.ir.info import TensorSpec
from modelconv.options import ConvertOptions

NATIVE_SIGNATURE = "serving_default"
NATIVE_FORMAT = "savedmodel-keras"
_VARIABLE_VALUE = "VARIABLE_VALUE"


def import_keras(path: Path,
                 options: ConvertOptions) -> SourceModel | tuple[str, ModelconvError | None]:
    """The model via the Keras handlers, or why that route does not apply.

    Args:
        path: the SavedModel folder.
        options: the conversion options (``signature`` must be ``serving_default``).

    Returns:
        The converted model, or ``(reason, error)``: why the route does not apply ("" when
        the folder is no tf.keras SavedModel) and the error to raise when tf2onnx is not
        available either (None: try the next route).

    Raises:
        UnsafeModelError: the SavedModel can run file/process ops.
        ModelLoadError: a file of the SavedModel is corrupt.
    """
    display = str(path)
    meta = read_keras_metadata(path, display, MAX_CONFIG_BYTES)
    if meta is None:
        return "", None
    if options.signature != NATIVE_SIGNATURE:
        return (f"signature '{options.signature}' asked for (the Keras route converts "
                f"'{NATIVE_SIGNATURE}')", None)
    config = meta.model_config()
    if config is None:
        cls = meta.root.get("class_name")
        error = UnsupportedFormatError(
            f"the SavedModel holds a subclassed Keras model ('{cls}') with no layer graph; "
            "converting it needs TensorFlow and tf2onnx", path=display)
        return f"the Keras model is a subclassed '{cls}' (no layer graph)", error
    graph = parse_model(config)
    try:
        check_layers(graph, display)
    except (UnsafeModelError, UnsupportedOpsError) as exc:
        return f"the Keras route cannot convert it ({exc.message})", exc
    saved = read_saved_model(path, display)
    refuse_unsafe_ops(saved, display)
    signature = saved.signatures.get(NATIVE_SIGNATURE)
    in_names = [ref.layer for ref in graph.inputs]
    out_names = keras_output_names([ref.layer for ref in graph.outputs])
    if signature is None or set(signature.inputs) != set(in_names) or \
            set(signature.outputs) != set(out_names):
        return (f"its '{NATIVE_SIGNATURE}' signature does not match the Keras model's "
                "inputs/outputs", None)
    return _convert_native(path, meta, signature, out_names)


def _convert_native(path: Path, meta: Any, signature: Any, out_names: list[str]) -> SourceModel:
    with open_keras_savedmodel(path, meta) as kf:
        model = convert_keras_file(kf)
    _name_outputs(model, out_names)
    specs = []
    for value in model.graph.inputs:
        info = signature.inputs[value.name]
        dtype = TF_DTYPES.get(info.dtype)
        specs.append(TensorSpec(str(value.name), dtype.name if dtype is not None else "float32",
                                tuple(info.shape) if info.shape is not None else ()))
    outputs = [str(v.name) for v in model.graph.outputs]
    return native_source(model, NATIVE_FORMAT, path, NATIVE_SIGNATURE, specs, outputs)


def keras_output_names(layers: list[str]) -> list[str]:
    """Keras 2's ``model.output_names``: output layer names, repeats suffixed ``_1``, ``_2``
    (the keys of a tf.keras SavedModel's serving signature)."""
    seen: set[str] = set()
    counts: dict[str, int] = {}
    out = []
    for name in layers:
        proposal = name
        while proposal in seen:
            counts[name] = counts.get(name, 0) + 1
            proposal = f"{name}_{counts[name]}"
        seen.add(proposal)
        out.append(proposal)
    return out


def _name_outputs(model: Any, keys: list[str]) -> None:
    """Name the graph outputs by their signature keys and sort them by key, as the
    TensorFlow runner returns a signature's outputs."""
    graph = model.graph
    outputs = list(graph.outputs)
    wanted = dict(zip((id(v) for v in outputs), keys, strict=True))
    for node in graph:
        for value in node.outputs:
            if value.name in keys and wanted.get(id(value)) != value.name:
                value.name = f"{value.name}__inner"  # an inner value holds an output's key
    for value, key in zip(outputs, keys, strict=True):
        value.name = key
    graph.outputs.clear()
    graph.outputs.extend(sorted(outputs, key=lambda v: str(v.name)))


# --------------------------------------------------------------------------------------
# the checkpoint as the weights of a KerasFile


class BundleTensor:
    """One weight in the bundle, looking like an h5py dataset to ``read_dataset``."""

    def __init__(self, bundle: TensorBundle, entry: BundleEntry, name: str):
        self._bundle = bundle
        self._entry = entry
        self.name = name
        self.shape = entry.shape
        self.dtype = entry.numpy_dtype or np.dtype(object)

    def __getitem__(self, index: Any) -> np.ndarray:
        if index != ():
            raise IndexError("only whole-tensor reads are supported")
        return self._bundle.read(self._entry.key)


class SavedModelWeights:
    """Layer weights of a Keras SavedModel, by layer path of names, in ``layer.weights`` order.

    Stands in for the h5py file of :class:`KerasFile` (``kind == "savedmodel"``).
    """

    def __init__(self, bundle: TensorBundle, graph: ObjectGraph,
                 name_paths: dict[tuple[str, ...], str]):
        self.bundle = bundle
        self.graph = graph
        self.name_paths = name_paths
        self._by_last: dict[str, list[str]] = {}
        for names, node_path in name_paths.items():
            self._by_last.setdefault(names[-1], []).append(node_path)

    def layer_datasets(self, path: tuple[str, ...]) -> tuple[list[BundleTensor], list[str]]:
        """The weights of the layer at ``path`` (unread) and their names."""
        node_path = self.name_paths.get(path)
        if node_path is None:  # a layer shared into a nested model is tracked once
            candidates = self._by_last.get(path[-1], [])
            node_path = candidates[0] if len(candidates) == 1 else None
        node = self.graph.walk(node_path) if node_path else None
        if node is None:
            return [], []
        variables = self.graph.child(node, "variables")
        if variables is None:
            keys = self._attribute_variables(node)
        else:
            keys = self._listed_variables(variables, "/".join(path))
        return [BundleTensor(self.bundle, self.bundle.entry(k), k) for k in keys], keys

    def _listed_variables(self, list_node: int, where: str) -> list[str]:
        """Checkpoint keys of a layer's tracked ``variables`` list, in list order."""
        children = self.graph.node(list_node)[0]
        if not all(local.isdigit() for local, _ in children):
            raise ModelLoadError(f"layer '{where}': unexpected variable list",
                                 path=self.graph.display)
        keys = []
        for _local, child in sorted(children, key=lambda c: int(c[0])):
            key = self.graph.node(child)[1].get(_VARIABLE_VALUE)
            if key is None:
                raise ModelLoadError(f"layer '{where}': variable node {child} has no saved "
                                     "value", path=self.graph.display)
            keys.append(key)
        return keys

    def _attribute_variables(self, node: int) -> list[str]:
        """Layers saved without a ``variables`` list (preprocessing layers such as
        Normalization; TFOpLambda has none at all): the variables held directly as
        attributes, in tracking (= creation) order, aliases dropped."""
        keys: list[str] = []
        for _local, child in self.graph.node(node)[0]:
            key = self.graph.node(child)[1].get(_VARIABLE_VALUE)
            if key is not None and key not in keys:
                keys.append(key)
        return keys

    def close(self) -> None:
        """Close the data shards."""
        self.bundle.close()


def open_keras_savedmodel(folder: str | os.PathLike[str],
                          metadata: KerasMetadata | None = None) -> KerasFile:
    """Open a tf.keras SavedModel folder as a :class:`KerasFile` (kind ``"savedmodel"``)."""
    base = Path(folder)
    display = str(base)
    meta = metadata or read_keras_metadata(base, display, MAX_CONFIG_BYTES)
    if meta is None:
        raise ModelLoadError(f"no {KERAS_METADATA} (not written by tf.keras)", path=display)
    config = meta.model_config()
    if config is None:
        raise ModelLoadError(f"the SavedModel's Keras object is a "
                             f"'{meta.root.get('class_name')}', not a graph network",
                             path=display)
    variables = base / "variables"
    if variables.is_symlink() or not variables.is_dir():
        raise ModelLoadError("SavedModel has no variables/ folder (or it is a link)",
                             path=display)
    bundle = TensorBundle(variables, "variables", display=f"{display}/variables")
    try:
        graph = ObjectGraph(bundle.read_string(OBJECT_GRAPH_KEY), f"{display}/variables")
        weights = SavedModelWeights(bundle, graph, meta.name_paths())
    except BaseException:
        bundle.close()
        raise
    return KerasFile(display, "savedmodel", config, weights, keras_version="2")
