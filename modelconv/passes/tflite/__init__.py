"""Passes that leave ONNX: their output is only valid as input to the TFLite exporter.

``nhwc`` rewrites layout-sensitive ops into the ``modelconv.nhwc`` domain and ``fuse_activation``
sets a non-ONNX ``fused_activation`` attribute; the ONNX-valid passes live one level up.
"""
