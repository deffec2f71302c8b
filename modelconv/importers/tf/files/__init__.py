"""TensorFlow-free, bounds-checked readers of a SavedModel folder's files (no IR, no handlers).

- the protobuf wire format is read with :mod:`modelconv.protowire` (shared with the ONNX
  importer);
- :mod:`.bundle`: the variables tensor bundle (``variables.index`` + data shards);
- :mod:`.saved_model`: ``saved_model.pb`` (signatures, graph, functions, constants, ops it can run);
- :mod:`.object_graph`: tf.keras' ``keras_metadata.pb`` and the checkpoint's object graph.
"""
