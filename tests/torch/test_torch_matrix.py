"""The torch source matrix: every torchvision classification model (weights=None) and
transformers encoder, decoder and encoder-decoder models from small configs, from each torch
source kind (module, state_dict, safetensors, TorchScript, .pt2), to ONNX and TFLite, verified
against torch eager with the default fp32 tolerance.

The full matrix is long (80 torchvision models x 5 sources x 2 targets): it is marked
``matrix`` and runs only with ``pytest --matrix``. A representative subset (:data:`DEFAULT`)
runs with the model-scale tests (``--models``).

Cells are ordered model by model and share what does not differ between them
(:class:`MatrixModels`): the model is built and given its weights once, each source file is
written once and converted to both targets. Every cell is still one ``modelconv.convert`` of
its source to its target, verified against torch with the default tolerance.
"""

from __future__ import annotations

import gc
import importlib.util
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import modelconv

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

SOURCES = ["module", "state_dict", "safetensors", "torchscript", "pt2"]
TARGETS = ["onnx", "tflite"]

#: torchvision constructor kwargs / input sides that differ from the defaults (side 64)
_TV_KWARGS: dict[str, dict[str, Any]] = {
    "inception_v3": {"aux_logits": False, "init_weights": True},
    "googlenet": {"aux_logits": False, "init_weights": True},
    "vit_b_16": {"image_size": 64}, "vit_b_32": {"image_size": 64},
    "vit_l_16": {"image_size": 64}, "vit_l_32": {"image_size": 64},
    "vit_h_14": {"image_size": 56},
}
#: AlexNet and VGG run at 64 too: their AdaptiveAvgPool2d to 6x6 / 7x7 then upsamples
#: (uneven, repeated windows)
_TV_SIDE = {"inception_v3": 96, "vit_h_14": 56, "maxvit_t": 224}


def _torchvision_names() -> list[str]:
    return list(torchvision.models.list_models(module=torchvision.models))


def _tv_factory(name: str) -> Callable[[], Any]:
    def build() -> Any:
        return torchvision.models.get_model(name, weights=None, **_TV_KWARGS.get(name, {}))

    return build


class _LastHidden(torch.nn.Module):
    """A transformers model called with token ids, returning one tensor."""

    def __init__(self, model: Any, field: str, decoder: bool = False) -> None:
        super().__init__()
        self.model, self.field, self.decoder = model, field, decoder

    def forward(self, input_ids: Any, decoder_input_ids: Any = None) -> Any:
        kwargs = {"decoder_input_ids": decoder_input_ids} if self.decoder else {}
        out = self.model(input_ids=input_ids, use_cache=False, return_dict=True, **kwargs)
        return getattr(out, self.field)


def _hf(config: str, model: str, field: str, decoder: bool = False,
        **params: Any) -> Callable[[], Any]:
    def build() -> Any:
        transformers = pytest.importorskip("transformers")
        cfg = getattr(transformers, config)(**params)
        return _LastHidden(getattr(transformers, model)(cfg), field, decoder)

    return build


_SMALL = {"vocab_size": 64}
#: transformers models: name -> (factory, number of int64 (1, 8) token inputs)
HF_MODELS: dict[str, tuple[Callable[[], Any], int]] = {
    "bert": (_hf("BertConfig", "BertModel", "last_hidden_state", hidden_size=32,
                 num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=32, **_SMALL), 1),
    "gpt2": (_hf("GPT2Config", "GPT2LMHeadModel", "logits", n_embd=32, n_layer=2, n_head=2,
                 n_positions=32, bos_token_id=0, eos_token_id=0, **_SMALL), 1),
    "llama": (_hf("LlamaConfig", "LlamaForCausalLM", "logits", hidden_size=32,
                  intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=32, bos_token_id=0,
                  eos_token_id=0, pad_token_id=0, **_SMALL), 1),
    "t5": (_hf("T5Config", "T5Model", "last_hidden_state", True, d_model=32, d_kv=8,
               d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
               dropout_rate=0.0, decoder_start_token_id=0, **_SMALL), 2),
    "bart": (_hf("BartConfig", "BartModel", "last_hidden_state", True, d_model=32,
                 encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                 max_position_embeddings=32, pad_token_id=1, bos_token_id=0,
                 eos_token_id=2, decoder_start_token_id=2, **_SMALL), 2),
    "marian": (_hf("MarianConfig", "MarianMTModel", "logits", True, d_model=32,
                   encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                   decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                   max_position_embeddings=32, pad_token_id=63, eos_token_id=0,
                   decoder_start_token_id=63, **_SMALL), 2),
}


def _spec(name: str) -> tuple[Callable[[], Any], list[tuple[int, ...]], list[str]]:
    """(factory, input shapes, input dtypes) of a matrix model."""
    if name in HF_MODELS:
        factory, count = HF_MODELS[name]
        return factory, [(1, 8)] * count, ["int64"] * count
    side = _TV_SIDE.get(name, 64)
    return _tv_factory(name), [(1, 3, side, side)], ["float32"]


def _examples(shapes: list[tuple[int, ...]], dtypes: list[str]) -> tuple[Any, ...]:
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randint(3, 60, s, generator=gen) if d == "int64"
                 else torch.randn(s, generator=gen) for s, d in zip(shapes, dtypes, strict=True))


def _trained(factory: Callable[[], Any]) -> Any:
    """The architecture with non-trivial weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = factory().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) \
                    and module.running_mean is not None and module.running_var is not None:
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


#: the file each source kind is written to
_SOURCE_FILES = {"state_dict": "w.pt", "safetensors": "w.safetensors", "torchscript": "ts.pt",
                 "pt2": "m.pt2"}


class MatrixModel:
    """One matrix model built once: the trained module, its example inputs and its source
    files, each written once (when a cell first asks for it) and shared by both targets.

    Building a model, initialising its weights, tracing it and exporting it cost as much as a
    conversion for the large torchvision models, and none of it differs between the cells of
    one model: every cell still converts its source file (or the module) to its target and
    verifies the result against torch.
    """

    def __init__(self, name: str, folder: Path) -> None:
        self.name, self.folder = name, folder
        self.factory, self.shapes, self.dtypes = _spec(name)
        self.module = _trained(self.factory)
        self.args = _examples(self.shapes, self.dtypes)
        self.files: dict[str, Path] = {}

    def source_file(self, source: str) -> Path:
        """The model written as ``source`` (written on the first call); the files of the
        other source kinds are removed first (only one large file on disk at a time)."""
        for kind in [k for k in self.files if k != source]:
            self.files.pop(kind).unlink(missing_ok=True)
        if source in self.files:
            return self.files[source]
        path = self.folder / _SOURCE_FILES[source]
        if source == "state_dict":
            torch.save(self.module.state_dict(), path)
        elif source == "safetensors":
            from safetensors.torch import save_model

            save_model(self.module, str(path))  # handles tied weights
        elif source == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(self.module, self.args, strict=False,
                                         check_trace=False)
            traced.save(str(path))
            del traced
        else:
            with torch.no_grad():
                program = torch.export.export(self.module, self.args)
            torch.export.save(program, str(path))
            del program
        self.files[source] = path
        return path

    def convert(self, source: str, target: str, out_dir: Path) -> Any:
        """Convert the model from ``source`` to ``target`` with verification (the cell)."""
        out = out_dir / f"{self.name}.{target}"
        shape_opts: dict[str, Any] = {"input_shapes": self.shapes, "input_dtypes": self.dtypes}
        if source == "module":
            return modelconv.convert(self.module, out, example_inputs=self.args)
        path = self.source_file(source)
        if source in ("state_dict", "safetensors"):
            return modelconv.convert(path, out, model=self.factory, **shape_opts)
        if source == "torchscript":
            return modelconv.convert(path, out, trust_code=True, **shape_opts)
        return modelconv.convert(path, out)

    def close(self) -> None:
        """Remove the source files."""
        for path in self.files.values():
            path.unlink(missing_ok=True)
        self.files.clear()


class MatrixModels:
    """The model of the running cells: cells are ordered model by model, so one model (and
    its files) is kept at a time and the previous one is released when the next is asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.current: MatrixModel | None = None

    def get(self, name: str) -> MatrixModel:
        """The model ``name``, built unless it is the current one."""
        if self.current is None or self.current.name != name:
            self.close()
            self.current = MatrixModel(name, self.folder)
        return self.current

    def close(self) -> None:
        """Release the current model and remove its files."""
        if self.current is not None:
            self.current.close()
            self.current = None
            gc.collect()


@pytest.fixture(scope="module")
def matrix_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixModels]:
    # one torch thread: the harness's own forward passes (tracing the TorchScript source)
    # and the captures do not stall on a busy machine or against the other xdist worker;
    # the verification's torch reference is single-threaded anyway
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    models = MatrixModels(tmp_path_factory.mktemp("matrix-sources"))
    try:
        yield models
    finally:
        models.close()
        torch.set_num_threads(threads)


def _cell(models: MatrixModels, name: str, source: str, target: str, out_dir: Path) -> None:
    """Convert and check one cell; its output is removed afterwards (pytest keeps every
    cell's folder: the large models' outputs would fill the disk)."""
    try:
        _check(models.get(name).convert(source, target, out_dir))
    finally:
        for path in out_dir.glob(f"{name}.{target}*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _check(result: Any) -> None:
    assert result.verified, result.report
    assert result.report is not None
    for o in result.report.outputs:
        assert o.passed, o


_NO_LITERT = importlib.util.find_spec("ai_edge_litert") is None


#: the models of at least 145 M parameters (0.6-2.6 GB of fp32 weights; a conversion of the
#: largest peaks near 13 GB): one xdist group, so no two of them run at once, collected first
#: so that one worker starts them while the others take the rest
LARGE = ["regnet_y_128gf", "vit_h_14", "vit_l_16", "vit_l_32", "regnet_y_32gf"]


def _group(name: str) -> str:
    """The xdist group of a model's cells (``--dist loadgroup`` keeps a group on one
    worker, in order, so the model is built and its source files written once)."""
    return "large" if name in LARGE else name


def _cells() -> list[Any]:
    tv = _torchvision_names()
    names = [n for n in LARGE if n in tv] + [n for n in tv if n not in LARGE] + list(HF_MODELS)
    return [pytest.param(n, s, t, id=f"{n}-{s}-{t}",
                         marks=[pytest.mark.matrix, pytest.mark.xdist_group(_group(n))]
                         + ([pytest.mark.skip("needs litert")]
                            if t == "tflite" and _NO_LITERT else []))
            for n in names for s in SOURCES for t in TARGETS]


@pytest.mark.parametrize(("name", "source", "target"), _cells())
def test_matrix(matrix_models: MatrixModels, tmp_path: Path, name: str, source: str,
                target: str) -> None:
    _cell(matrix_models, name, source, target, tmp_path)


#: the default suite's share of the matrix: every source once, both targets, a CNN, an
#: encoder, a decoder and an encoder-decoder
DEFAULT = [("resnet18", "safetensors", "onnx"), ("mobilenet_v3_small", "pt2", "tflite"),
           ("squeezenet1_1", "torchscript", "onnx"), ("bert", "state_dict", "onnx"),
           ("gpt2", "module", "tflite"), ("t5", "safetensors", "onnx"),
           ("llama", "pt2", "onnx"), ("marian", "module", "onnx"),
           ("alexnet", "state_dict", "tflite")]  # upsampling adaptive pooling at 64 px


@pytest.mark.models
@pytest.mark.parametrize(("name", "source", "target"), DEFAULT,
                         ids=[f"{n}-{s}-{t}" for n, s, t in DEFAULT])
def test_matrix_subset(matrix_models: MatrixModels, tmp_path: Path, name: str, source: str,
                       target: str) -> None:
    if target == "tflite" and _NO_LITERT:
        pytest.skip("needs litert")
    _cell(matrix_models, name, source, target, tmp_path)
