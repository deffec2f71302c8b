"""TensorFlow SavedModel importer.

Three routes, tried in this order:

- **Keras** (format ``savedmodel-keras``, no TensorFlow): a SavedModel written by
  tf.keras / tf_keras carries ``keras_metadata.pb`` with the model's Keras config. When
  that config is a layer graph (Functional/Sequential) and the default ``serving_default``
  signature is asked for, the model is converted by the Keras layer handlers, its weights
  read from the checkpoint's tensor bundle (:mod:`modelconv.importers.tf.files.object_graph`).
- **graph** (format ``savedmodel-graph``, no TensorFlow): any other SavedModel (Keras 3
  ``model.export()``, ``tf.saved_model.save`` of a ``tf.Module``, subclassed models) whose
  signature uses only ops with a handler is converted op by op from its TF graph
  (:mod:`modelconv.importers.tf.graph`), variables read from the tensor bundle.
- **tf2onnx** (format ``savedmodel``) for the rest (control flow, TensorList LSTMs, ops
  without a handler): the reason is in the warnings.

Nothing of the graph runs on the first two routes, yet (as on the tf2onnx route) the ops
the SavedModel can run are read from ``saved_model.pb`` first and file/process ops are
refused: verification runs it.

Each route is a module: :mod:`~modelconv.importers.tf.keras_route`,
:mod:`~modelconv.importers.tf.graph.route` and :mod:`~modelconv.importers.tf.tf2onnx_route`;
the TF-free readers of the folder's files are in :mod:`modelconv.importers.tf.files`, the ops
every route refuses in :mod:`modelconv.importers.tf.safety`. This module only chooses.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelconv.errors import ModelLoadError
from modelconv.formats import SourceModel
from modelconv.importers.tf.graph.route import import_graph
from modelconv.importers.tf.keras_route import import_keras
from modelconv.importers.tf.tf2onnx_route import import_tf2onnx
from modelconv.options import ConvertOptions


def import_savedmodel(src: str | os.PathLike[str], options: ConvertOptions) -> SourceModel:
    """Convert a SavedModel folder's signature into the IR, by the first route that applies.

    Args:
        src: the SavedModel folder (holding ``saved_model.pb``).
        options: the conversion options (``signature``, ``opset``, progress callback).

    Returns:
        The converted model; its ``format`` names the route taken and its ``warnings`` why
        the TensorFlow-free routes were not (when tf2onnx converted it).

    Raises:
        ModelLoadError: the folder is no SavedModel or a file in it is corrupt.
        UnsafeModelError: the SavedModel can run file/process ops.
        MissingDependencyError: only tf2onnx could convert it and TensorFlow is missing.
        UnsupportedOpsError: no route converts every op.
    """
    path = Path(src)
    if not (path / "saved_model.pb").is_file():
        raise ModelLoadError("not a SavedModel folder (no saved_model.pb)", path=str(path))
    options.report_progress("import", 0.0)
    for route in (import_keras, import_graph):
        converted = route(path, options)
        if isinstance(converted, SourceModel):
            options.report_progress("import", 1.0)
            return converted
        # the graph route runs last: its reason (and error) is what tf2onnx reports
        reason, error = converted
    model = import_tf2onnx(path, options, reason, error)
    options.report_progress("import", 1.0)
    return model
