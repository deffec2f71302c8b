"""Keras 3 layer classes (exported by ``keras.layers``) that have no handler, and why.

Every layer class ``keras.layers`` exports either has a handler (``LAYERS``) or a reason
here; ``tests/keras/test_keras_coverage.py`` fails when Keras ships a class that has neither, or
when a class is both handled and listed. A model holding one of these classes is refused
before conversion (``UnsupportedOpsError`` naming the class). The table is shown by
``modelconv ops`` and docs/support.md.
"""

from __future__ import annotations

_NOT_YET = "not implemented yet"
_CODE = "runs code or a model from outside the file (never executed by modelconv)"
_BASE = "abstract base class: a subclass saves its own class name (refused as unknown)"
_CELL = ("RNN cell: only reached through a generic RNN layer, which is not implemented yet "
         "(LSTM, GRU, SimpleRNN, Bidirectional convert)")
_STRINGS = "string vocabulary lookup: string tensors are not supported by the IR exporters"
_HASH = "hashes with FarmHash/SipHash: neither ONNX nor TFLite has that op"

#: class name -> why it is not converted
REFUSED: dict[str, str] = {
    "AdaptiveAveragePooling1D": _NOT_YET + " (fixed output size pooling)",
    "AdaptiveAveragePooling2D": _NOT_YET + " (fixed output size pooling)",
    "AdaptiveAveragePooling3D": _NOT_YET + " (fixed output size pooling)",
    "AdaptiveMaxPooling1D": _NOT_YET + " (fixed output size pooling)",
    "AdaptiveMaxPooling2D": _NOT_YET + " (fixed output size pooling)",
    "AdaptiveMaxPooling3D": _NOT_YET + " (fixed output size pooling)",
    "AutoContrast": _NOT_YET + " (deterministic per-image contrast stretch)",
    "ContrastLimitedAdaptiveHistogramEqualization":
        "per-image histogram equalization: no ONNX/TFLite op (not implemented)",
    "Equalization": "per-image histogram equalization: no ONNX/TFLite op (not implemented)",
    "MaxNumBoundingBoxes": "bounding-box preprocessing: no tensor inputs of that kind",
    "ConvLSTM1D": _NOT_YET + " (convolutional recurrence)",
    "ConvLSTM2D": _NOT_YET + " (convolutional recurrence)",
    "ConvLSTM3D": _NOT_YET + " (convolutional recurrence)",
    "EinsumDense": _NOT_YET,
    "GroupQueryAttention": _NOT_YET,
    "ReversibleEmbedding": _NOT_YET,
    "SpectralNormalization": (_NOT_YET + " (at inference: the inner layer with its stored "
                              "kernel; the wrapper's weight layout is not mapped yet)"),
    "Pipeline": _NOT_YET + " (a list of preprocessing layers)",
    "RandomCrop": ("not the identity at inference (center crop after an aspect-preserving "
                   "resize): " + _NOT_YET),
    "CenterCrop": _NOT_YET + " (crops, or resizes an input smaller than the target)",
    "MelSpectrogram": _NOT_YET + " (STFT)",
    "STFTSpectrogram": _NOT_YET + " (STFT)",
    "Hashing": _HASH,
    "HashedCrossing": _HASH,
    "IntegerLookup": _NOT_YET + " (vocabulary lookup)",
    "StringLookup": _STRINGS,
    "TextVectorization": _STRINGS,
    "Lambda": _CODE,
    "TorchModuleWrapper": _CODE,
    "JaxLayer": _CODE,
    "FlaxLayer": _CODE,
    "TFSMLayer": _CODE,
    "Layer": _BASE,
    "Wrapper": _BASE,
    "RNN": _NOT_YET + " (generic RNN over a cell; LSTM, GRU, SimpleRNN convert)",
    "GRUCell": _CELL,
    "LSTMCell": _CELL,
    "SimpleRNNCell": _CELL,
    "StackedRNNCells": _CELL,
    "InputLayer": "a model input: read by the config parser, not converted as a layer",
}
