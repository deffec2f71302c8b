"""Default configs of the Keras layer classes modelconv converts, taken from Keras itself.

``default_configs(keras_module, names)`` builds every named layer with its defaults (plus
the required arguments in ARGS) and returns ``{name: layer.get_config()}``. Run as
``python -m tests.keras_layer_defaults tf_keras NAME...`` it prints that as JSON: Keras 2
(tf_keras) needs TensorFlow, which must not share a process with Keras 3 on torch.
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: required constructor arguments (everything else is left at its default)
ARGS: dict[str, tuple[Any, ...]] = {
    "Dense": (2,), "Embedding": (5, 3), "Activation": ("relu",), "Dropout": (0.5,),
    "SpatialDropout1D": (0.5,), "SpatialDropout2D": (0.5,), "SpatialDropout3D": (0.5,),
    "GaussianNoise": (0.1,), "GaussianDropout": (0.1,), "AlphaDropout": (0.1,),
    "Reshape": ((2,),), "Permute": ((1,),), "RepeatVector": (2,), "LSTM": (2,), "GRU": (2,),
    "SimpleRNN": (2,), "MultiHeadAttention": (2, 3), "Resizing": (4, 4),
    "RandomRotation": (0.1,), "RandomZoom": (0.1,), "RandomTranslation": (0.1, 0.1),
    "RandomContrast": (0.1,), "RandomBrightness": (0.1,), "Rescaling": (1.0,), "Dot": (1,),
    "AveragePooling1D": (2,), "AveragePooling2D": (2,), "AveragePooling3D": (2,),
    "AvgPool1D": (2,), "AvgPool2D": (2,), "AvgPool3D": (2,),
    "StochasticDepth": (0.1,), "LayerScale": (1e-6, 4),
    "RandomColorDegeneration": (0.5,), "RandomHue": (0.5,), "RandomPosterization": (4,),
    "RandomSaturation": (0.5,), "RandomSharpness": (0.5,), "CenterCrop": (4, 4),
    "Discretization": ([0.0, 1.0],), "CategoryEncoding": (4,),
    "EinsumDense": ("ab,bc->ac", 3), "IntegerLookup": (None, 1, None, -1, [1, 2, 3]),
    "RandomCrop": (2, 2), "ReversibleEmbedding": (5, 3), "GroupQueryAttention": (2, 4, 2),
}
for _n in ("AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D",
           "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D"):
    ARGS[_n] = (2,)
for _n in ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
           "SeparableConv1D", "SeparableConv2D"):
    ARGS[_n] = ARGS[_n.replace("Conv", "Convolution")] = (2, 3)
for _n in ("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"):
    ARGS[_n] = (2, 3)
for _n in ("DepthwiseConv1D", "DepthwiseConv2D"):
    ARGS[_n] = (3,)
#: Keras 3 functional ops a model config stores as layers (``x + 3.0`` -> ``Add``)
OPS = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Power", "Maximum", "Minimum")
#: registered names that only Keras 3 ops carry (no layer class of that name)
OPS_ONLY = ("Divide", "TrueDivide", "Power")
#: registered names that are spellings of another registered class
ALIASES = {"add": "Add", "subtract": "Subtract", "multiply": "Multiply",
           "GroupedQueryAttention": "GroupQueryAttention"}  # its class name, in legacy .h5
#: classes a Keras 3 file cannot hold (tf.keras only)
KERAS2_ONLY = {"TFOpLambda", "ThresholdedReLU"}
#: registered classes tf_keras does not have (Keras 3 only)
KERAS3_ONLY = {"AugMix", "CutMix", "MixUp", "RandAugment", "RandomColorDegeneration",
               "RandomColorJitter", "RandomElasticTransform", "RandomErasing",
               "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert",
               "RandomPerspective", "RandomPosterization", "RandomSaturation",
               "RandomSharpness", "RandomShear", "Solarization", "RMSNormalization",
               "AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D",
               "AdaptiveAveragePooling3D", "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D",
               "AdaptiveMaxPooling3D", "AutoContrast", "Pipeline", "ReversibleEmbedding",
               "GroupQueryAttention", "MelSpectrogram", "STFTSpectrogram"}


def build(keras: Any, name: str) -> Any:
    """Layer ``name`` of the Keras package ``keras`` with default arguments."""
    pkg = keras.__name__
    if name == "Bidirectional":
        return keras.layers.Bidirectional(keras.layers.LSTM(2))
    if name == "SpectralNormalization":
        return keras.layers.SpectralNormalization(keras.layers.Dense(2))
    if name == "RNN":
        return keras.layers.RNN(keras.layers.LSTMCell(2))
    if name == "Pipeline":
        return keras.layers.Pipeline([keras.layers.Rescaling(1.0)])
    if name == "TimeDistributed":
        return keras.layers.TimeDistributed(keras.layers.Dense(2))
    if name == "InputLayer":
        kw = {"shape": (3,)} if pkg == "keras" else {"input_shape": (3,)}
        return keras.layers.InputLayer(**kw)
    if name in ("LayerScale", "StochasticDepth"):
        module = __import__(f"{pkg}.src.applications.convnext", fromlist=[name])
        return getattr(module, name)(*ARGS[name])
    if name == "TFOpLambda":
        import tensorflow as tf
        from tf_keras.src.layers.core.tf_op_layer import TFOpLambda

        return TFOpLambda(tf.math.add)
    return getattr(keras.layers, name)(*ARGS.get(name, ()))


def build_op(name: str) -> Any:
    """Keras 3's functional op class ``name`` (what ``x + 3.0`` records)."""
    from keras.src.ops import numpy as knp

    return getattr(knp, name)()


def default_configs(keras: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: get_config()}`` of each layer in ``names`` built with its defaults."""
    return {name: build(keras, name).get_config() for name in names}


def _plain(obj: Any) -> Any:
    """numpy scalars and tuples as JSON (a saved config holds them so)."""
    return obj.tolist() if hasattr(obj, "tolist") else list(obj)


def main() -> int:
    """Print the default configs of ``sys.argv[2:]`` from package ``sys.argv[1]``."""
    import importlib

    keras = importlib.import_module(sys.argv[1])
    print(json.dumps(default_configs(keras, sys.argv[2:]), default=_plain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
