"""Keras 3 image augmentation layers: the identity at inference.

Keras 3's augmentation layers transform their input only when called with
``training=True``; ``predict()`` and ``model(x, training=False)`` return the input
unchanged (checked against Keras by ``tests/keras/test_keras_layers.py``). Their options only
parameterize the random transformation, so all of them are inert. Layers that are *not*
the identity at inference (``RandomCrop``, ``AutoContrast``, ``Equalization``) are listed
in :mod:`modelconv.importers.keras.refused` with the reason.
"""

from __future__ import annotations

from typing import Any

from modelconv.importers.keras.common import KTensor, keras_layer
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

#: every option of these layers parameterizes the training-time random transformation
_RANDOM_OPTIONS = ("data_format", "factor", "seed", "value_range", "interpolation",
                   "fill_mode", "fill_value", "scale", "alpha", "all_ops", "chain_depth",
                   "num_chains", "num_ops", "brightness_factor", "contrast_factor",
                   "hue_factor", "saturation_factor", "kernel_size", "sigma", "x_factor",
                   "y_factor", "addition_factor", "threshold_factor")

#: Keras 3 classes registered here (absent from tf_keras)
AUGMENTATION_LAYERS = (
    "AugMix", "CutMix", "MixUp", "RandAugment", "RandomColorDegeneration",
    "RandomColorJitter", "RandomElasticTransform", "RandomErasing", "RandomGaussianBlur",
    "RandomGrayscale", "RandomHue", "RandomInvert", "RandomPerspective",
    "RandomPosterization", "RandomSaturation", "RandomSharpness", "RandomShear",
    "Solarization")


@keras_layer(*AUGMENTATION_LAYERS, inert=_RANDOM_OPTIONS)
def augmentation_identity(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                          xs: list[KTensor]) -> KTensor:
    """A random augmentation layer at inference: its input, unchanged.

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: the layer's weights (none).
        xs: the input tensor.

    Returns:
        The input tensor.
    """
    return xs[0]
