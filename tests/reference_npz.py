"""Reference files written by the test builders: ``in:<name>`` / ``out:<name>`` arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_reference(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(inputs, outputs)`` by name, in the order the builder wrote them."""
    with np.load(path) as data:
        ins = {k[3:]: data[k] for k in data.files if k.startswith("in:")}
        outs = {k[4:]: data[k] for k in data.files if k.startswith("out:")}
    return ins, outs
