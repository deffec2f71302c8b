"""modelconv benchmarks: modelconv against the established converters, route by route.

Run ``python -m benchmarks run --quick``; see benchmarks/README.md. Every conversion runs in
a fresh subprocess (:mod:`benchmarks.worker`) so its time and peak memory are its own.
"""
