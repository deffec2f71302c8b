"""The model catalogue: what each benchmark model is, its inputs, and where it is cached.

Models are built from code with random weights (nothing is downloaded). The builders live in
:mod:`benchmarks.zoo_torch`, :mod:`benchmarks.zoo_keras` and :mod:`benchmarks.zoo_onnx`;
they run in subprocesses (see :mod:`benchmarks.worker`) because Keras/TensorFlow and torch
must not share a process here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, static shape, dtype, and [0, high) for integer inputs."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    high: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: its family (torch/keras/onnx), inputs and a short description."""

    name: str
    family: str
    inputs: tuple[InputSpec, ...]
    description: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "family": self.family, "description": self.description,
                "inputs": [i.to_dict() for i in self.inputs], "params": dict(self.params)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`."""
        inputs = tuple(InputSpec(i["name"], tuple(i["shape"]), i["dtype"], i["high"])
                       for i in data["inputs"])
        return ModelSpec(data["name"], data["family"], inputs, data["description"],
                         dict(data.get("params", {})))


_IMG_NCHW = (InputSpec("x", (1, 3, 224, 224)),)
_IMG_NHWC = (InputSpec("x", (1, 224, 224, 3)),)

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in [
        # torch (torchvision when importable, else hand-written equivalents)
        ModelSpec("resnet18", "torch", _IMG_NCHW, "ResNet-18, 224x224"),
        ModelSpec("resnet50", "torch", _IMG_NCHW, "ResNet-50, 224x224"),
        ModelSpec("mobilenet_v3", "torch", _IMG_NCHW, "MobileNetV3-Large, 224x224"),
        ModelSpec("efficientnet_b0", "torch", _IMG_NCHW, "EfficientNet-B0, 224x224"),
        ModelSpec("vit_small", "torch", _IMG_NCHW,
                  "ViT /16 at small width (12 layers, d=384, 6 heads), 224x224"),
        ModelSpec("gpt2_small", "torch", (InputSpec("input_ids", (1, 32), "int64", 2048),),
                  "GPT-2 style LM (transformers GPT2Config: 4 layers, d=256, vocab 2048), "
                  "32 tokens",
                  {"n_layer": 4, "n_embd": 256, "n_head": 4, "vocab_size": 2048,
                   "n_positions": 128}),
        # keras 3 (keras.applications with weights=None)
        ModelSpec("k_mobilenetv2", "keras", _IMG_NHWC, "Keras MobileNetV2, 224x224"),
        ModelSpec("k_resnet50", "keras", _IMG_NHWC, "Keras ResNet50, 224x224"),
        ModelSpec("k_efficientnetb0", "keras", _IMG_NHWC, "Keras EfficientNetB0, 224x224"),
        ModelSpec("k_lstm", "keras", (InputSpec("tokens", (1, 64), "int32", 5000),),
                  "Keras LSTM text classifier (Embedding 5000x64, LSTM 64, Dense 4 logits), "
                  "64 tokens"),
        # onnx (tiny, used by the harness's own test)
        ModelSpec("onnx_mlp", "onnx", (InputSpec("x", (1, 64)),),
                  "ONNX MLP 64-128-10 built with onnx.helper"),
    ]
}

#: the > 2 GiB model of ``python -m benchmarks scale`` (not part of ``run``)
SCALE_MODEL = ModelSpec(
    "gpt2_scale", "torch", (InputSpec("input_ids", (1, 16), "int64", 50257),),
    "GPT-2 style LM, d=1600, 14 layers, untied LM head (~592M params, ~2.4 GB fp32)",
    {"n_layer": 14, "n_embd": 1600, "n_head": 25, "vocab_size": 50257, "n_positions": 1024},
)


def get_model(name: str) -> ModelSpec:
    """The spec called ``name`` (the scale model included)."""
    if name == SCALE_MODEL.name:
        return SCALE_MODEL
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(MODELS)}") from None


def make_inputs(spec: ModelSpec, seed: int = SEED) -> dict[str, np.ndarray]:
    """The seeded inputs every converter and the source framework are run on."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for inp in spec.inputs:
        if inp.dtype.startswith("int"):
            out[inp.name] = rng.integers(0, max(inp.high, 1), size=inp.shape).astype(inp.dtype)
        else:
            out[inp.name] = rng.standard_normal(inp.shape).astype(inp.dtype)
    return out


@dataclass(frozen=True)
class CachePaths:
    """Files of one cached model (built once per run by the builder subprocess)."""

    root: Path

    @property
    def marker(self) -> Path:
        """Written last by the builder: the build finished (holds its metadata)."""
        return self.root / "built.json"

    @property
    def inputs(self) -> Path:
        """The seeded inputs (.npz, one array per input name)."""
        return self.root / "inputs.npz"

    @property
    def reference(self) -> Path:
        """The source framework's outputs on :attr:`inputs` (.npz, out0, out1, ...)."""
        return self.root / "reference.npz"

    @property
    def torch_weights(self) -> Path:
        """state_dict of a torch model (safetensors)."""
        return self.root / "weights.safetensors"

    @property
    def keras_file(self) -> Path:
        """Keras 3 native archive."""
        return self.root / "model.keras"

    @property
    def keras_h5(self) -> Path:
        """Keras legacy HDF5 file (kept for reference; the routes use model.keras)."""
        return self.root / "model.h5"

    @property
    def savedmodel(self) -> Path:
        """TensorFlow SavedModel folder exported from the Keras model."""
        return self.root / "savedmodel"

    @property
    def tfkeras_savedmodel(self) -> Path:
        """SavedModel folder of the tf_keras twin (``model.save(dir, save_format="tf")``,
        with keras_metadata.pb: modelconv reads it without TensorFlow)."""
        return self.root / "tfkeras_savedmodel"

    @property
    def onnx_file(self) -> Path:
        """ONNX source model."""
        return self.root / "model.onnx"


def cache_paths(cache_dir: Path, model: str) -> CachePaths:
    """Where ``model`` is cached under ``cache_dir``."""
    return CachePaths(Path(cache_dir) / model)
