"""Keras 3 layer classes (exported by ``keras.layers``) that have no handler, and why.

Every layer class ``keras.layers`` exports either has a handler (``LAYERS``) or a reason
here; ``tests/keras/test_keras_coverage.py`` fails when Keras ships a class that has neither, or
when a class is both handled and listed. A model holding one of these classes is refused
before conversion (``UnsupportedOpsError`` naming the class). The table is shown by
``modelconv ops`` and docs/support.md.
"""

from __future__ import annotations

_CODE = "runs code or a model from outside the file (never executed by modelconv)"
_BASE = "abstract base class: a subclass saves its own class name (refused as unknown)"
_CELL = ("RNN cell: converted inside keras.layers.RNN (alone it is a single step called "
         "with its states, which a saved model does not hold)")
_STRINGS = "string vocabulary lookup: string tensors are not supported by the IR exporters"
_HASH = "hashes with FarmHash/SipHash: neither ONNX nor TFLite has that op"

#: class name -> why it is not converted
REFUSED: dict[str, str] = {
    "ContrastLimitedAdaptiveHistogramEqualization":
        "per-image histogram equalization: no ONNX/TFLite op (not implemented)",
    "Equalization": "per-image histogram equalization: no ONNX/TFLite op (not implemented)",
    "MaxNumBoundingBoxes": "bounding-box preprocessing: no tensor inputs of that kind",
    "Masking": ("its mask is consumed by downstream layers (RNNs, attention, pooling); "
                "mask propagation is not implemented yet"),
    "Hashing": _HASH,
    "HashedCrossing": _HASH,
    "StringLookup": _STRINGS,
    "TextVectorization": _STRINGS,
    "Lambda": _CODE,
    "TorchModuleWrapper": _CODE,
    "JaxLayer": _CODE,
    "FlaxLayer": _CODE,
    "TFSMLayer": _CODE,
    "Layer": _BASE,
    "Wrapper": _BASE,
    "GRUCell": _CELL,
    "LSTMCell": _CELL,
    "SimpleRNNCell": _CELL,
    "StackedRNNCells": _CELL,
    "InputLayer": "a model input: read by the config parser, not converted as a layer",
}
