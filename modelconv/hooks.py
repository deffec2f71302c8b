"""Test hooks: deterministic pause points for tests that interrupt a running conversion.

``MODELCONV_TEST_PAUSE=<point>`` makes the process announce ``modelconv: paused at <point>``
on stderr and sleep (up to 60 s) when it reaches that point, so a test can send a signal
while the conversion is exactly there. Points: ``export`` (inside the exporter's temporary
output folder) and ``verify`` (the written output is complete, not yet verified). Unset,
a pause point costs one environment lookup.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "MODELCONV_TEST_PAUSE"


def pause_point(point: str) -> None:
    """Pause here when the test hook names ``point``.

    Args:
        point: the name of this point (``export``, ``verify``).
    """
    if os.environ.get(ENV) != point:
        return
    sys.stderr.write(f"modelconv: paused at {point}\n")
    sys.stderr.flush()
    time.sleep(60)
