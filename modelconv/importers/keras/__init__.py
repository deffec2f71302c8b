"""Keras importer: .h5 (Keras 2 and 3) and .keras files, read with h5py/zipfile/json only.

Converting a Keras file never imports keras or tensorflow; only verification (the
source runner) does, and only when asked for. The exception is a ``.keras`` model whose
graph is built by an installed package's code (keras_hub backbones): with that package
allowed (``allow_packages`` / ``--allow-package``) it is loaded with Keras on torch and
captured with torch.export (:mod:`modelconv.importers.keras.package_route`).
"""

from __future__ import annotations

import importlib.util
import os

from modelconv.formats import SourceModel
from modelconv.importers.keras import (  # noqa: F401  (imported for their registrations)
    layers_activations,
    layers_attention,
    layers_audio,
    layers_augment,
    layers_conv,
    layers_convlstm,
    layers_core,
    layers_gqa,
    layers_image,
    layers_merge,
    layers_norm,
    layers_pooling,
    layers_preprocessing,
    layers_reshape,
    layers_rnn,
    layers_tfop,
    layers_wrappers,
)
from modelconv.importers.keras.convert import convert_keras_file
from modelconv.importers.keras.packages import (
    DEFAULT_ALLOWED_PACKAGES,
    check_packages,
    needs_package_route,
)
from modelconv.importers.keras.reader import open_keras_file
from modelconv.ir.info import infer_int_ranges
from modelconv.options import ConvertOptions

__all__ = ["import_keras"]


def import_keras(src: str | os.PathLike[str], options: ConvertOptions) -> SourceModel:
    """Import a Keras .h5/.keras model into the IR."""
    path = str(src)
    options.report_progress("import", 0.0)
    with open_keras_file(path) as kf:
        if kf.kind == "keras" and needs_package_route(kf.config):
            config = kf.config
        else:
            config = None
            model = convert_keras_file(kf)
        fmt = "keras" if kf.kind == "keras" else "keras-h5"
        major = kf.major
    if config is not None:  # graph built by a package's code: audit, then load with Keras
        allowed = options.allow_packages or DEFAULT_ALLOWED_PACKAGES
        packages = check_packages(config, allowed, path)
        from modelconv.importers.keras.package_route import import_package_model

        return import_package_model(path, config, packages, options)
    options.report_progress("import", 1.0)
    reason = runner_unavailable_reason(major)
    make_runner = None
    if reason is None:
        def make_runner() -> object:
            from modelconv.verification.runners_keras import KerasRunner

            return KerasRunner(path)

    return SourceModel(
        model=model, format=fmt, path=path, make_runner=make_runner,  # type: ignore[arg-type]
        runner_unavailable=reason, int_ranges=infer_int_ranges(model.graph),
    )


def runner_unavailable_reason(major: int) -> str | None:
    """Why the Keras source model cannot be run here, or None when it can."""
    if major == 2:
        if importlib.util.find_spec("tf_keras") is None or \
                importlib.util.find_spec("tensorflow") is None:
            return ("this Keras 2 (tf.keras) file needs tf_keras and TensorFlow to run "
                    "(pip install 'modelconv[tf]' tf-keras); Keras 3 cannot load every "
                    "Keras 2 file")
        return None
    if importlib.util.find_spec("keras") is None:
        return "running Keras models needs keras (pip install 'modelconv[keras]')"
    if importlib.util.find_spec("torch") is None and \
            importlib.util.find_spec("tensorflow") is None:
        return "Keras 3 needs a backend: install torch or tensorflow"
    return None
