"""One source of truth for options: ConvertOptions metadata -> convert docstring and CLI help."""

from __future__ import annotations

import argparse
import inspect
from dataclasses import fields

import modelconv
from modelconv.cli import build_parser
from modelconv.ir.info import ModelInfo, TensorSpec
from modelconv.options import ConvertOptions


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


def test_every_option_has_help_and_is_in_convert_doc() -> None:
    doc = inspect.getdoc(modelconv.convert) or ""
    assert "Keyword Args:" in doc
    for f in fields(ConvertOptions):
        assert f.metadata.get("help"), f"{f.name} has no help text"
        entry = next((line for line in doc.splitlines() if line.strip().startswith(
            f"{f.name} (")), None)
        assert entry is not None, f"{f.name} is missing from convert.__doc__"
        # the help text (first words) is there, and the default
        assert f.metadata["help"].split()[0] in entry
    assert "Default ``'serving_default'``" in doc
    assert "CLI: ``--rtol``" in doc


def test_cli_flags_use_the_fields_help_text() -> None:
    subs = _subparsers(build_parser())
    checked = 0
    for f in fields(ConvertOptions):
        flag = f.metadata.get("cli")
        if not flag:
            continue
        found = False
        for name, sub in subs.items():
            for action in sub._actions:
                if flag in action.option_strings:
                    assert action.help == f.metadata["help"], (name, flag)
                    found = True
                    checked += 1
        assert found, f"{flag} (field {f.name}) is in no sub-command"
    assert checked >= 25


def test_model_info_repr() -> None:
    info = ModelInfo(path="m.onnx", format="onnx",
                     inputs=[TensorSpec("x", "float32", ("batch", 4))],
                     outputs=[TensorSpec("y<", "float32", ("batch", 2))],
                     op_counts={"Gemm": 1}, num_parameters=10, parameter_bytes=40, opset=21,
                     producer="p&q")
    text = repr(info)
    assert text.startswith("<ModelInfo m.onnx (onnx, opset 21)")
    assert "x: float32['batch', 4]" in text and "10 parameters" in text
    page = info._repr_html_()
    assert "y&lt;" in page and "p&amp;q" in page and "<table>" in page
