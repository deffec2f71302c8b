"""A keras.applications model saved as .keras -> TFLite, converted without TensorFlow.

    python examples/keras_application_to_tflite.py --out /tmp/mc-example

The model is built and saved with Keras 3 (``weights=None``) in a subprocess; the conversion
itself reads the .keras file with zipfile/json/h5py only. Verification runs the source with
Keras 3 on the torch backend and the result with LiteRT.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import modelconv

BUILD = """
import sys, keras, numpy as np
model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35,
                                       classes=10, classifier_activation=None)
# a freshly initialised network has BatchNorm statistics 0/1 and near-zero logits; give the
# statistics trained-like values so the comparison is on meaningful numbers
rng = np.random.default_rng(0)
for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1,
                           beta.shape), rng.normal(0, 0.1, mean.shape),
                           rng.uniform(0.5, 1.5, var.shape)])
model.save(sys.argv[1])
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    keras_file = args.out / "mobilenetv2.keras"
    env = dict(os.environ, KERAS_BACKEND="torch")
    subprocess.run([sys.executable, "-c", BUILD, str(keras_file)], check=True, env=env)

    result = modelconv.convert(keras_file, args.out / "mobilenetv2.tflite", overwrite=True)
    print(result.report.summary())
    print("TensorFlow imported by the conversion:", "tensorflow" in sys.modules)
    assert result.verified and "tensorflow" not in sys.modules


if __name__ == "__main__":
    main()
