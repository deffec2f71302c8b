"""Every PyTorch source kind x ResNet-18-, MobileNetV3-, ViT- and GPT-2-style models, through
the CLI (files) and the Python API (module), verified against torch eager within 1e-4."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelconv.cli import main

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.models

from tests.torch.test_torch_models import MobileNetV3ish, ResNet18ish, ViTish  # noqa: E402

SHAPES = {"resnet18ish": "1,3,64,64", "mobilenetv3ish": "1,3,64,64", "vitish": "1,3,32,32",
          "gpt2ish": "1,12"}


def resnet18ish() -> Any:
    """Factory named by --model."""
    torch.manual_seed(0)
    return ResNet18ish().eval()


def mobilenetv3ish() -> Any:
    """Factory named by --model."""
    torch.manual_seed(0)
    return MobileNetV3ish().eval()


def vitish() -> Any:
    """Factory named by --model."""
    torch.manual_seed(0)
    return ViTish().eval()


class GPT2Logits(torch.nn.Module):
    """A tiny GPT-2 language model returning logits for token ids."""

    def __init__(self) -> None:
        super().__init__()
        import transformers

        cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      vocab_size=100, use_cache=False, bos_token_id=0,
                                      eos_token_id=0)
        self.lm = transformers.GPT2LMHeadModel(cfg)

    def forward(self, input_ids: Any) -> Any:
        return self.lm(input_ids=input_ids).logits


def gpt2ish() -> Any:
    """Factory named by --model."""
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    return GPT2Logits().eval()


def _example(name: str) -> Any:
    shape = tuple(int(d) for d in SHAPES[name].split(","))
    if name == "gpt2ish":
        return torch.randint(0, 100, shape)
    return torch.randn(shape)


def _trained(name: str) -> Any:
    """The factory's architecture with different ("trained") weights to load."""
    model = globals()[name]()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def _cli(args: list[str], report: Path) -> dict[str, Any]:
    assert main([*args, "--quiet", "--rtol", "1e-4", "--report", str(report)]) == 0
    data: dict[str, Any] = json.loads(report.read_text())
    assert data["passed"] and not data["skipped"]
    assert all(o["max_rel"] < 1e-4 for o in data["outputs"])
    return data


MODELS = list(SHAPES)


@pytest.mark.parametrize("name", MODELS)
def test_module_python_api(tmp_path: Path, name: str) -> None:
    import modelconv

    model = _trained(name)
    result = modelconv.convert(model, tmp_path / "m.onnx", example_inputs=(_example(name),))
    assert result.verified and result.report is not None
    assert result.report.outputs[0].max_rel < 1e-4


def _dtype_args(name: str) -> list[str]:
    return ["--input-dtype", "int64"] if name == "gpt2ish" else []


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_cli(tmp_path: Path, name: str) -> None:
    torch.save(_trained(name).state_dict(), tmp_path / "w.pt")
    _cli(["convert", str(tmp_path / "w.pt"), str(tmp_path / "m.onnx"), "--model",
          f"tests.torch.test_torch_source_matrix:{name}", "--input-shape", SHAPES[name],
          *_dtype_args(name)], tmp_path / "r.json")


@pytest.mark.parametrize("name", MODELS)
def test_safetensors_cli(tmp_path: Path, name: str) -> None:
    from safetensors.torch import save_model

    save_model(_trained(name), str(tmp_path / "w.safetensors"))  # handles tied weights
    _cli(["convert", str(tmp_path / "w.safetensors"), str(tmp_path / "m.onnx"), "--model",
          f"tests.torch.test_torch_source_matrix:{name}", "--input-shape", SHAPES[name],
          *_dtype_args(name)], tmp_path / "r.json")


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_cli(tmp_path: Path, name: str) -> None:
    traced = torch.jit.trace(_trained(name), (_example(name),), strict=False, check_trace=False)
    traced.save(str(tmp_path / "ts.pt"))
    _cli(["convert", str(tmp_path / "ts.pt"), str(tmp_path / "m.onnx"), "--trust-code",
          "--input-shape", SHAPES[name], *_dtype_args(name)], tmp_path / "r.json")


@pytest.mark.parametrize("name", MODELS)
def test_pt2_cli(tmp_path: Path, name: str) -> None:
    program = torch.export.export(_trained(name), (_example(name),))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    _cli(["convert", str(tmp_path / "m.pt2"), str(tmp_path / "m.onnx")], tmp_path / "r.json")
