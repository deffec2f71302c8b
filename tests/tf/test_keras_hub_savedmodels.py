"""keras_hub transformer backbones exported as SavedModels (``model.export(path)``) convert to
TFLite through the TensorFlow-free graph route and match Keras within 1e-4.

The four backbones (BERT, GPT-2, Llama with grouped-query attention, ViT) are small configs
built from code (no presets, nothing downloaded) in ONE subprocess on the TensorFlow backend,
which also records Keras's outputs on a seeded input; this process never imports TensorFlow.
The TFLite files run in a LiteRT worker process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import modelconv
from tests.litert_isolated import IsolatedLiteRT

pytestmark = [
    pytest.mark.tf,
    pytest.mark.models,
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None
                           for m in ("tensorflow", "keras_hub")),
                       reason="needs tensorflow and keras_hub to build the SavedModels"),
]

SEQ = 8  # the sequence length the TFLite file is specialised to (its default for free dims)

_BUILD = textwrap.dedent(f"""
    import os, sys
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np, keras, keras_hub
    out = sys.argv[1]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    text = dict(vocabulary_size=100, num_layers=2, hidden_dim=32, intermediate_dim=64)
    models = {{
        "bert": keras_hub.models.BertBackbone(num_heads=2, max_sequence_length=16, **text),
        "gpt2": keras_hub.models.GPT2Backbone(num_heads=2, max_sequence_length=16, **text),
        "llama": keras_hub.models.LlamaBackbone(num_query_heads=2, num_key_value_heads=1,
                                                **text),
        "vit": keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8,
                                            num_layers=2, num_heads=2, hidden_dim=32,
                                            mlp_dim=64),
    }}
    mask = np.ones((1, {SEQ}), "int32"); mask[0, 6:] = 0
    tokens = rng.integers(0, 100, (1, {SEQ})).astype("int32")
    feeds = {{
        "bert": {{"token_ids": tokens, "padding_mask": mask,
                 "segment_ids": rng.integers(0, 2, (1, {SEQ})).astype("int32")}},
        "gpt2": {{"token_ids": tokens, "padding_mask": mask}},
        "llama": {{"token_ids": tokens, "padding_mask": mask}},
        "vit": {{"images": rng.standard_normal((1, 32, 32, 3)).astype("float32")}},
    }}
    for name, model in models.items():
        model.export(os.path.join(out, name), verbose=False)
        y = model(feeds[name] if name != "vit" else feeds[name]["images"], training=False)
        y = y if isinstance(y, dict) else {{"out": y}}
        np.savez(os.path.join(out, name + ".npz"),
                 **{{"in_" + k: v for k, v in feeds[name].items()}},
                 **{{"out_" + k: keras.ops.convert_to_numpy(v) for k, v in y.items()}})
""")


@pytest.fixture(scope="module")
def hub_savedmodels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keras_hub_savedmodels")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", _BUILD, str(out)], check=True, env=env,
                   timeout=300, capture_output=True)
    return out


@pytest.fixture(scope="module")
def litert() -> object:
    worker = IsolatedLiteRT()
    yield worker
    worker.close()


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "vit"])
def test_keras_hub_savedmodel_to_tflite(hub_savedmodels: Path, litert: IsolatedLiteRT,
                                        name: str, tmp_path: Path) -> None:
    dst = tmp_path / f"{name}.tflite"
    result = modelconv.convert(hub_savedmodels / name, dst, verify=False)
    # the graph route, not the tf2onnx fallback (which BERT and GPT-2 took before run-time
    # Slice sizes were handled)
    assert result.source_format == "savedmodel-graph", result.warnings
    ref = np.load(hub_savedmodels / f"{name}.npz")
    feeds = {k[3:]: ref[k] for k in ref.files if k.startswith("in_")}
    outcome = litert.run(dst.read_bytes(), feeds)
    assert outcome.status == "ok", outcome.message
    wanted = [ref[k] for k in ref.files if k.startswith("out_")]
    assert len(outcome.outputs) == len(wanted)
    for want in wanted:  # outputs told apart by shape (BERT: pooled [1, 32], sequence)
        got = [g for g in outcome.outputs if g.shape == want.shape]
        assert len(got) == 1, [g.shape for g in outcome.outputs]
        np.testing.assert_allclose(got[0], want, atol=1e-4, rtol=0)
