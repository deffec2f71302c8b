"""Paths every test area shares."""

from __future__ import annotations

from pathlib import Path

#: the tests/ folder (shared helpers and build scripts live here)
TESTS = Path(__file__).resolve().parent
#: the repository root
ROOT = TESTS.parent
