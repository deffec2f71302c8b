"""Passes that leave ONNX: their output is only valid as input to the TFLite exporter.

``nhwc`` rewrites layout-sensitive ops into the ``modelconv.nhwc`` domain (``layouts`` holds its
layout algebra; ``batched_matmul``, ONNX-valid, is its first step: a flattened-batch MatMul
made whole again), ``fuse_matmul_bias`` and ``fold_layernorm_affine`` give that domain's MatMul a
bias input, and ``fuse_activation`` sets a non-ONNX ``fused_activation`` attribute; the
ONNX-valid passes live one level up.
"""
