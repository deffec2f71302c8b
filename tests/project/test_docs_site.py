"""The documentation site: every page in the nav exists, every error class is explained,
the CLI reference renders every sub-command, and (with mkdocs installed) the site builds."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import modelconv.errors as errors
from tests.paths import ROOT


def _nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    return re.findall(r":\s*([\w/.-]+\.md)\s*$", text, flags=re.M)


def test_every_nav_page_exists() -> None:
    pages = _nav_pages()
    assert len(pages) >= 15
    missing = [p for p in pages if not (ROOT / "docs" / p).is_file()]
    assert not missing


def test_every_error_class_is_in_troubleshooting() -> None:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    classes = [name for name, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, errors.ModelconvError) and obj is not errors.ModelconvError
               and obj.__module__ == errors.__name__]
    assert classes
    missing = [c for c in classes if f"`{c}`" not in text]
    assert not missing, f"undocumented error classes: {missing}"


def test_cli_reference_lists_every_command_and_option() -> None:
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import cli_reference
    finally:
        sys.path.pop(0)
    from modelconv.cli import build_parser

    text = cli_reference.render_cli()
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():
            assert f"`modelconv {name}`" in text
            for opt in sub._actions:
                if isinstance(opt, argparse._HelpAction):
                    continue
                for flag in opt.option_strings:
                    assert f"`{flag}`" in text, (name, flag)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs not installed (extra 'docs'); .ci/run builds the site")
def test_site_builds_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs") or "mkdocs"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:] + mkdocs
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "cli" / "index.html").is_file()
