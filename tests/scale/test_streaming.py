"""Weights streamed from file to file: a torch weights file is never copied into memory.

The module is built with meta parameters and the file's pages become its weights
(modelconv/importers/torch/lazy_weights.py); IR initializers are views of the same pages
or lazy relayouts of them; writers take one tensor at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import modelconv  # noqa: E402
from benchmarks import decoders  # noqa: E402
from tests.scale.helpers import anonymous_growth, initializer_homes  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _save(tmp: Path, name: str) -> tuple[Path, int]:
    from safetensors.torch import save_file

    state = decoders.random_state(decoders.build(name))
    path = tmp / f"{name}.safetensors"
    save_file(state, str(path))
    return path, sum(t.numel() * t.element_size() for t in state.values())


def test_safetensors_initializers_are_views_of_the_file(tmp_path: Path) -> None:
    path, _ = _save(tmp_path, "gpt2_small")
    source = modelconv.load(path, model="benchmarks.decoders:gpt2_small",
                            input_shapes=[(1, 8)], input_dtypes=["int64"])
    from modelconv.passes import cleanup

    cleanup(source.model)
    mapped, lazy, other = initializer_homes(source.model, path)
    # wte is mapped; the Linear weights (MatMul of a transpose): lazy views of the file
    assert other == 0 and mapped >= 1 and lazy >= 2 * 4 + 1
    assert not source.warnings


def test_state_dict_pt_is_mapped_and_verifies(tmp_path: Path) -> None:
    model = decoders.build("gpt2_small")
    state = decoders.random_state(model)
    pt = tmp_path / "w.pt"
    torch.save(state, pt)
    source = modelconv.load(pt, model="benchmarks.decoders:gpt2_small",
                            input_shapes=[(1, 8)], input_dtypes=["int64"])
    mapped, _, other = initializer_homes(source.model, pt)
    assert other == 0 and mapped >= 2 * 4 + 1  # before the passes: every weight mapped
    result = modelconv.convert(pt, tmp_path / "w.onnx", model="benchmarks.decoders:gpt2_small",
                               input_shapes=[(1, 8)], input_dtypes=["int64"])
    assert result.verified


class _Derived(torch.nn.Module):
    """A buffer computed from a parameter in __init__: cannot be mapped (meta)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(4, 4))
        self.register_buffer("scale", self.w.detach().abs().sum(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w / self.scale


def test_derived_buffer_falls_back_to_memory_and_says_so(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    module = _Derived()
    path = tmp_path / "d.safetensors"
    save_file({"w": module.w.detach()}, str(path))
    result = modelconv.convert(path, tmp_path / "d.onnx", model=_Derived,
                               input_shapes=[(2, 4)])
    assert result.verified
    assert any("not mapped from the file" in w and "scale" in w for w in result.warnings)


@pytest.mark.models
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_conversion_holds_no_weight_sized_anonymous_memory(tmp_path: Path, target: str) -> None:
    """No pass or writer holds a weight-sized copy (TFLite: no LayerNorm-affine folding
    into the Linear weights once constants are streamed)."""
    big, weights = _save(tmp_path, "gpt2_test")  # 233 MB, largest tensor 16 MB
    micro, _ = _save(tmp_path, "gpt2_micro")
    grown = anonymous_growth(big, tmp_path / f"m.{target}", "benchmarks.decoders:gpt2_test",
                             micro, "benchmarks.decoders:gpt2_micro")
    assert grown < 0.3 * weights, (grown / 2**20, weights / 2**20)  # a copy would be >= 1x
    written = tmp_path / ("m.onnx.data" if target == "onnx" else "m.tflite")
    assert written.stat().st_size >= weights


def test_onnx_external_data_is_byte_identical_across_runs(tmp_path: Path) -> None:
    src, _ = _save(tmp_path, "gpt2_micro")
    outs = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        dst = tmp_path / run / "m.onnx"
        modelconv.convert(src, dst, model="benchmarks.decoders:gpt2_micro", verify=False,
                          input_shapes=[(1, 8)], input_dtypes=["int64"], external_data=True)
        outs.append((dst.read_bytes(), (tmp_path / run / "m.onnx.data").read_bytes()))
    assert outs[0] == outs[1]
    assert len(outs[0][1]) > 0
    np.testing.assert_equal(len(outs[0][0]) < len(outs[0][1]), True)


def test_tflite_offset_buffers_from_mapped_weights_load_in_litert(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_edge_litert import schema_py_generated as s

    from modelconv.exporters.tflite import writer

    monkeypatch.setattr(writer, "OFFSET_BUFFERS_FROM", 1000)  # the > 1 GiB layout
    src, weights = _save(tmp_path, "gpt2_micro")
    dst = tmp_path / "m.tflite"
    result = modelconv.convert(src, dst, model="benchmarks.decoders:gpt2_micro",
                               input_shapes=[(1, 8)], input_dtypes=["int64"])
    assert result.verified  # LiteRT (worker process) loaded and ran it; matches torch
    data = dst.read_bytes()
    model = s.Model.GetRootAs(data, 0)
    placed = [model.Buffers(i) for i in range(model.BuffersLength())
              if model.Buffers(i).Offset() > 1]
    assert placed and all(b.DataLength() == 0 for b in placed)
    assert all(b.Offset() % 16 == 0 and b.Offset() + b.Size() <= len(data) for b in placed)
    assert sum(b.Size() for b in placed) >= weights * 0.9


def test_large_model_verification_runs_source_then_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelconv.verification import in_turn

    monkeypatch.setattr(in_turn, "IN_TURN_FROM_BYTES", 0)
    src, _ = _save(tmp_path, "gpt2_micro")
    result = modelconv.convert(src, tmp_path / "m.onnx", model="benchmarks.decoders:gpt2_micro",
                               input_shapes=[(1, 8)], input_dtypes=["int64"], samples=2)
    assert result.verified and result.report is not None
    assert any("never loaded together" in n for n in result.report.notes)


class _Fake:
    """A runner: y = 2x; records itself as alive until garbage-collected."""

    name = "fake"
    alive: set[str] = set()

    def __init__(self, tag: str) -> None:
        from modelconv.ir.info import TensorSpec

        self.tag = tag
        self.specs = [TensorSpec("x", "float32", (2, 3))]
        _Fake.alive.add(tag)

    def __del__(self) -> None:
        _Fake.alive.discard(self.tag)

    def input_specs(self) -> list:  # type: ignore[type-arg]
        return self.specs

    def output_names(self) -> list[str]:
        return ["y"]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        return [2 * np.asarray(feeds[0])]


def test_in_turn_releases_the_source_before_loading_the_target() -> None:
    from modelconv.options import ConvertOptions
    from modelconv.verification.in_turn import verify_in_turn

    seen: list[set[str]] = []

    def make_target() -> _Fake:
        seen.append(set(_Fake.alive))
        return _Fake("target")

    report = verify_in_turn(lambda: _Fake("source"), make_target, ConvertOptions(), "fp32")
    assert seen == [set()]  # the source was gone when the target was made
    assert report.passed and report.source_runtime == "fake"


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_fp16_written_tensor_by_tensor_gives_the_same_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    from modelconv.exporters import onnx_quantize
    from modelconv.exporters.tflite import quantize

    src, _ = _save(tmp_path, "gpt2_micro")
    files = []
    for lazy_from in (1 << 40, 0):  # converted up front, then every tensor as written
        monkeypatch.setattr(onnx_quantize, "LAZY_FP16_FROM", lazy_from)
        monkeypatch.setattr(quantize, "LAZY_CAST_FROM", lazy_from)
        dst = tmp_path / f"{lazy_from}" / f"m{suffix}"
        dst.parent.mkdir()
        result = modelconv.convert(src, dst, model="benchmarks.decoders:gpt2_micro", fp16=True,
                                   input_shapes=[(1, 8)], input_dtypes=["int64"],
                                   verify=lazy_from == 0)
        files.append(b"".join(p.read_bytes() for p in result.outputs))
    assert files[0] == files[1]
    assert result.verified


@pytest.mark.parametrize("quantize", ["dynamic", "int8"])
def test_tflite_int8_written_tensor_by_tensor_gives_the_same_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quantize: str) -> None:
    """int8 weights computed as each is written (their scales measured a few channels at a
    time) give the bytes of the eager conversion, and the model still verifies."""
    from modelconv.exporters.tflite import quantize as q

    src, _ = _save(tmp_path, "gpt2_micro")
    files = []
    for lazy_from in (1 << 40, 0):
        monkeypatch.setattr(q, "LAZY_CAST_FROM", lazy_from)
        monkeypatch.setattr(q, "_PEAK_BLOCK", 1 << 40 if lazy_from else 64)
        dst = tmp_path / f"{lazy_from}" / "m.tflite"
        dst.parent.mkdir()
        result = modelconv.convert(src, dst, model="benchmarks.decoders:gpt2_micro",
                                   quantize=quantize, input_shapes=[(1, 8)],
                                   calibration="random" if quantize == "int8" else None,
                                   input_dtypes=["int64"],
                                   verify=lazy_from == 0 and quantize == "dynamic")
        files.append(dst.read_bytes())
    assert files[0] == files[1]
    # full int8 of this decoder is not within int8 tolerance (its additive attention mask
    # takes the activation range); the dynamic-range model is
    assert result.verified or quantize == "int8", result.report


def test_large_tflite_is_verified_from_a_mapped_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelconv import fileio
    from modelconv.verification.runners_litert import LiteRTRunner

    monkeypatch.setattr(fileio, "MAP_FROM_BYTES", 0)  # as for a file of 1 GiB or more
    src, _ = _save(tmp_path, "gpt2_micro")
    dst = tmp_path / "m.tflite"
    result = modelconv.convert(src, dst, model="benchmarks.decoders:gpt2_micro",
                               input_shapes=[(1, 8)], input_dtypes=["int64"])
    assert result.verified
    runner = LiteRTRunner(dst)
    assert not isinstance(runner._content, bytes)  # mapped, and loaded by path in the worker
    assert runner._model._params.get("model_path") == str(dst)


def _probe(mode: str, out: Path) -> int:
    run = subprocess.run([sys.executable, "-m", "tests.scale.onnx_probe", mode, str(out)],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=300, check=True)
    return int(run.stdout.split()[-1])


def test_embedded_onnx_is_written_without_a_copy_of_the_weights(tmp_path: Path) -> None:
    """write_embedded serialises hollow tensors and writes each one's bytes in turn: the
    peak grows by about one tensor, not by the weights (ir.save's proto copy: 1x)."""
    from tests.scale.onnx_probe import WEIGHT_BYTES

    grown = _probe("write", tmp_path / "m.onnx")
    assert grown < 0.25 * WEIGHT_BYTES, grown / 2**20
    model = ir.load(tmp_path / "m.onnx")
    got = model.graph.initializers["w7"].const_value.numpy()
    assert got.shape == (1024, 1024) and float(got[3, 5]) == 7 / 1024


def test_onnxruntime_verification_keeps_weights_in_the_file(tmp_path: Path) -> None:
    """The verifier's ORT session maps external data and does not pre-pack MatMul weights
    into anonymous memory (with pre-packing: +1x the weights)."""
    from tests.scale.onnx_probe import WEIGHT_BYTES

    grown = _probe("ort", tmp_path / "m.onnx")
    assert grown < 0.25 * WEIGHT_BYTES, grown / 2**20
