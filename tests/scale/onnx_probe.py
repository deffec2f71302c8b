"""Memory probes of the ONNX writer and of the ONNX Runtime verification runner.

``python -m tests.scale.onnx_probe write OUT``: builds a chain of 40 MatMuls over 4 MiB
weights, writes it with :func:`modelconv.exporters.onnx.write_embedded` and prints how far
the peak resident memory (VmHWM) rose above the resident memory before the write.

``python -m tests.scale.onnx_probe ort OUT``: saves the same model with external data, opens
it with :class:`~modelconv.verification.runners.OnnxRuntimeRunner`, runs it once and prints
how far the anonymous memory (RssAnon) rose. Used by tests/scale/test_streaming.py.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx_ir as ir

#: the weights of the probe model: 40 tensors of 4 MiB
WEIGHT_BYTES = 40 * 4 * 2**20


def status(key: str) -> int:
    """One ``/proc/self/status`` figure, in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def chain() -> ir.Model:
    """x @ w0 @ w1 ... @ w39, each w a 1024x1024 float32 filled with its index / 1024."""
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([1, 1024]))
    values, nodes, v = [], [], x
    for i in range(40):
        w = ir.Value(name=f"w{i}", type=ir.TensorType(ir.DataType.FLOAT),
                     shape=ir.Shape([1024, 1024]),
                     const_value=ir.tensor(np.full((1024, 1024), i / 1024, np.float32)))
        node = ir.node("MatMul", [v, w])
        values.append(w)
        nodes.append(node)
        v = node.outputs[0]
    v.name = "y"
    graph = ir.Graph([x], [v], nodes=nodes, initializers=values, opset_imports={"": 21})
    return ir.Model(graph, ir_version=10)


def main(mode: str, out: str) -> int:
    """Run one probe and return the growth in bytes."""
    model = chain()
    if mode == "write":
        from modelconv.exporters.onnx import write_embedded

        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak (VmHWM) to the current RSS
        base = status("VmRSS")
        write_embedded(model, out)
        return status("VmHWM") - base
    from modelconv.verification.runners import OnnxRuntimeRunner

    ir.save(model, out, external_data=out.rsplit("/", 1)[-1] + ".data")
    del model
    base = status("RssAnon")
    runner = OnnxRuntimeRunner(out)
    runner.run([np.ones((1, 1024), np.float32)])
    return status("RssAnon") - base


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2]))
