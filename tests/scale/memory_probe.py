"""Run one conversion in this process and print its anonymous-memory growth as JSON.

``python -m tests.scale.memory_probe SRC DST ARCH [warmup_src warmup_arch]``: a warm-up
conversion of a tiny model first (libraries and code paths pay their one-time memory), then
``RssAnon`` is sampled every 5 ms during the measured conversion; prints
``{"base_mib": .., "peak_mib": ..}``. TFLite output uses the offset-buffer layout (streamed
constants) whatever the size. ``ARCH`` is ``-`` for a source that holds its own
architecture (Keras, SavedModel, ONNX). Used by tests/scale/test_streaming*.py.
"""

from __future__ import annotations

import json
import sys
import threading
import time


def rss_anon_mib() -> float:
    """This process's anonymous resident memory (MiB), from /proc/self/status."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def _arch(arch: str) -> dict[str, str]:
    return {} if arch == "-" else {"model": arch}


def main(argv: list[str]) -> None:
    """Convert argv[0] to argv[1] with architecture argv[2] and report memory."""
    import modelconv
    from modelconv.exporters.tflite import writer

    writer.OFFSET_BUFFERS_FROM = 2**20  # the streamed layout, as for models above 1 GiB
    src, dst, arch = argv[:3]
    kwargs: dict[str, object] = {
        "verify": False, "overwrite": True,
        "external_data": True if dst.endswith(".onnx") else None}
    if arch != "-":  # a torch weights file: the architecture and its (1, 8) token input
        kwargs.update(input_shapes=[(1, 8)], input_dtypes=["int64"])
    if len(argv) > 3:
        modelconv.convert(argv[3], dst, **kwargs, **_arch(argv[4]))
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon_mib())
            time.sleep(0.005)

    base = rss_anon_mib()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    modelconv.convert(src, dst, **kwargs, **_arch(arch))
    done.set()
    thread.join()
    peak[0] = max(peak[0], rss_anon_mib())
    print(json.dumps({"base_mib": base, "peak_mib": peak[0]}))


if __name__ == "__main__":
    main(sys.argv[1:])
