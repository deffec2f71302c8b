"""Shared pytest configuration."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelconv.cli import main

#: runs the CLI in-process: (exit code, stderr with whitespace collapsed)
CliRunner = Callable[[list[str]], tuple[int, str]]


#: markers whose tests run as their own step (``--<marker>``), not in the default run
_STEPS = ("models", "conformance", "matrix")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--conformance", action="store_true",
                     help="run only the ONNX backend node suite (marker 'conformance')")
    parser.addoption("--matrix", action="store_true",
                     help="run only the torch source matrix (marker 'matrix')")
    parser.addoption("--models", action="store_true",
                     help="run only the model-scale tests (marker 'models')")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # the model-scale tests, the node suite and the torch matrix are their own CI steps:
    # deselected (and counted as such) by default, the only thing selected with --models /
    # --conformance / --matrix
    wanted = {m for m in _STEPS if config.getoption(f"--{m}")}
    keep, dropped = [], []
    for item in items:
        marked = {m for m in _STEPS if item.get_closest_marker(m)}
        (keep if (marked & wanted if wanted else not marked) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run ``modelconv ARGS`` in-process; fail on a traceback or a terminal escape on stderr."""
    def run(args: list[str]) -> tuple[int, str]:
        code = main(args)
        err = capsys.readouterr().err
        assert "Traceback" not in err and "\x1b" not in err, err
        return code, " ".join(err.split())
    return run
