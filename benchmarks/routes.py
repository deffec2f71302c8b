"""Routes: a source kind, a target format, modelconv and the anchors it is compared with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Converter:
    """One converter on one route; ``key`` selects its code in :mod:`benchmarks.converters`."""

    key: str
    label: str

    @property
    def is_modelconv(self) -> bool:
        """True for the converter under test."""
        return self.key == "modelconv"


@dataclass(frozen=True)
class Route:
    """``source`` is torch / keras / savedmodel / tfkeras-savedmodel / onnx, ``target``
    onnx / tflite."""

    name: str
    source: str
    target: str
    converters: tuple[Converter, ...]
    models: tuple[str, ...]
    quick_model: str
    default: bool = True

    @property
    def family(self) -> str:
        """The model family the source comes from (savedmodel sources are Keras models)."""
        return ("keras" if self.source in ("keras", "savedmodel", "tfkeras-savedmodel")
                else self.source)

    @property
    def anchors(self) -> tuple[Converter, ...]:
        """The established converters modelconv is compared with."""
        return tuple(c for c in self.converters if not c.is_modelconv)


MC = Converter("modelconv", "modelconv")
_TORCH_MODELS = ("resnet18", "resnet50", "mobilenet_v3", "efficientnet_b0", "vit_small",
                 "gpt2_small")
_KERAS_MODELS = ("k_mobilenetv2", "k_resnet50", "k_efficientnetb0", "k_lstm")

ROUTES: dict[str, Route] = {
    r.name: r
    for r in [
        Route("torch-onnx", "torch", "onnx",
              (MC, Converter("torch-dynamo", "torch.onnx.export(dynamo=True)"),
               Converter("torch-script", "torch.onnx.export(dynamo=False)")),
              _TORCH_MODELS, "resnet18"),
        Route("keras-onnx", "keras", "onnx",
              (MC, Converter("tf2onnx-keras", "tf2onnx.convert.from_keras")),
              _KERAS_MODELS, "k_mobilenetv2"),
        Route("savedmodel-onnx", "savedmodel", "onnx",
              (MC, Converter("tf2onnx-cli", "python -m tf2onnx.convert --saved-model")),
              _KERAS_MODELS, "k_mobilenetv2"),
        # the tf_keras twin's SavedModel (keras_metadata.pb): modelconv's TensorFlow-free route
        Route("tfkeras-savedmodel-onnx", "tfkeras-savedmodel", "onnx",
              (MC, Converter("tf2onnx-cli", "python -m tf2onnx.convert --saved-model")),
              _KERAS_MODELS, "k_mobilenetv2"),
        Route("keras-tflite", "keras", "tflite",
              (MC, Converter("tflite-keras", "tf.lite.TFLiteConverter.from_keras_model")),
              _KERAS_MODELS, "k_mobilenetv2"),
        Route("savedmodel-tflite", "savedmodel", "tflite",
              (MC, Converter("tflite-savedmodel", "tf.lite.TFLiteConverter.from_saved_model")),
              _KERAS_MODELS, "k_mobilenetv2"),
        Route("torch-tflite", "torch", "tflite",
              (MC, Converter("litert-torch", "litert_torch.convert")),
              _TORCH_MODELS, "resnet18"),
        # a sanity route with no framework (used by the harness's test); not run by default
        Route("onnx-onnx", "onnx", "onnx",
              (MC, Converter("onnx-roundtrip", "onnx.load + onnx.save")),
              ("onnx_mlp",), "onnx_mlp", default=False),
    ]
}


def select_routes(names: list[str] | None) -> list[Route]:
    """The routes named (all default routes when ``names`` is empty)."""
    if not names:
        return [r for r in ROUTES.values() if r.default]
    unknown = [n for n in names if n not in ROUTES]
    if unknown:
        raise SystemExit(f"unknown route(s): {', '.join(unknown)}; known: {', '.join(ROUTES)}")
    return [ROUTES[n] for n in names]
