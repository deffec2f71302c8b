"""Reports (JSON, HTML) and the assert_equivalent helper, on a fault-injected ONNX model."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

import modelconv
from modelconv.testing import assert_equivalent
from modelconv.verification.html import render_html
from tests.paths import ROOT

CNN = ROOT / "fixtures" / "onnx" / "small_cnn.onnx"


def _perturbed(tmp_path: Path, initializer: str = "c2_w") -> Path:
    model = onnx.load(str(CNN))
    for init in model.graph.initializer:
        if init.name == initializer:
            arr = numpy_helper.to_array(init).copy()
            arr.flat[0] += 3.0
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    path = tmp_path / "perturbed.onnx"
    onnx.save(model, path)
    return path


def _attribute_changed(tmp_path: Path) -> Path:
    model = onnx.load(str(CNN))
    for node in model.graph.node:
        if node.name == "pool":
            for attr in node.attribute:
                if attr.name == "kernel_shape":
                    attr.ints[:] = [3, 3]
    path = tmp_path / "attr.onnx"
    onnx.save(model, path)
    return path


def test_assert_equivalent_passes_on_clean_conversion(tmp_path: Path) -> None:
    out = tmp_path / "clean.onnx"
    modelconv.convert(CNN, out, opset=19, verify=False)
    report = assert_equivalent(CNN, out)
    assert report.passed and report.outputs[0].cosine > 0.999999


@pytest.mark.parametrize(("make", "layer"), [(_perturbed, "conv2"),
                                              (_attribute_changed, "pool")])
def test_assert_equivalent_names_the_layer(tmp_path: Path, make: object, layer: str) -> None:
    bad = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(AssertionError) as info:
        assert_equivalent(CNN, bad)
    text = str(info.value)
    assert "output 'probs'" in text
    assert f"first diverging layer: '{layer}'" in text


def test_json_and_html_reports(tmp_path: Path) -> None:
    report = modelconv.verify(CNN, _perturbed(tmp_path), localize=True)
    assert not report.passed
    data = json.loads(report.to_json())
    assert data["first_divergence"]["source_name"] == "conv2"
    assert [entry["source_name"] for entry in data["layers"]][:3] == ["conv1", "bn1", "relu1"]
    assert all(entry["passed"] for entry in data["layers"][:3])
    page = render_html(report)
    assert page.startswith("<!doctype html>")
    assert '<svg id="layer-chart"' in page and "first divergence: conv2" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless chromium")
def test_html_report_renders_in_chromium(tmp_path: Path) -> None:
    report = modelconv.verify(CNN, _perturbed(tmp_path), localize=True)
    page, shot = tmp_path / "report.html", tmp_path / "report.png"
    page.write_text(render_html(report))
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=900,900", page.as_uri()],
        capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank image
