"""The torch-free ONNX path: the numpy image processor equals FerImageProcessor, and
`fer-hf predict --backend onnx` never imports torch, transformers or optimum."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_hf.inference.runtime import NumpyFerImageProcessor
from fer_hf.models import FerImageProcessor

REPO = Path(__file__).resolve().parents[1]
RELEASE = REPO / "checkpoints" / "fer2013-factorized"
skimage_data = pytest.importorskip("skimage.data")


@pytest.mark.parametrize(
    "settings",
    [
        {"size": 48, "do_grayscale": True, "num_channels": 1},  # the FER2013 releases
        {
            "size": {"height": 64, "width": 56},
            "num_channels": 3,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
        },
        {"size": 40, "do_grayscale": True, "num_channels": 3, "resample": 3},
        {"size": 32, "do_normalize": False, "do_rescale": False},
        {"size": 48, "crop_size": 40, "num_channels": 1},  # a crop-trained model's centre crop
        {"size": {"height": 50, "width": 47}, "crop_size": {"height": 41, "width": 40}},
    ],
)
def test_numpy_processor_equals_fer_image_processor(settings, tmp_path):
    reference = FerImageProcessor(**settings)
    reference.save_pretrained(tmp_path)
    ours = NumpyFerImageProcessor.from_pretrained(tmp_path)
    astronaut = skimage_data.astronaut()
    images = [
        Image.fromarray(astronaut[60:200, 150:290]),  # PIL RGB
        astronaut[10:90, 20:130],  # RGB array
        astronaut[:50, :50, 0],  # gray array
        np.dstack([astronaut[:40, :60], np.full((40, 60), 128, np.uint8)]),  # RGBA array
        Image.fromarray(astronaut[100:180, 100:180]).convert("L"),  # PIL gray
    ]
    expected = reference(images=images, return_tensors="np")["pixel_values"]
    got = ours(images=images, return_tensors="np")["pixel_values"]
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_other_processors_are_left_to_transformers(tmp_path):
    assert NumpyFerImageProcessor.from_pretrained(tmp_path) is None  # no config at all
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "ViTImageProcessor", "size": 224})
    )
    assert NumpyFerImageProcessor.from_pretrained(tmp_path) is None


@pytest.mark.skipif(not (RELEASE / "onnx" / "model.onnx").is_file(), reason="no bundled release")
def test_predict_onnx_imports_no_torch(tmp_path):
    """The CLI's ONNX path, in a fresh interpreter: results, and no torch/transformers/optimum."""
    photo = tmp_path / "one.jpg"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    script = (
        "import sys\n"
        "from fer_hf.cli import main\n"
        f"args = ['predict', {str(photo)!r}, '--backend', 'onnx', '--model', {str(RELEASE)!r}]\n"
        "code = main(args)\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(record["faces"]) == 1 and record["faces"][0]["label"]
    # ... and the same import check notices torch when a path does import it.
    done = subprocess.run(
        [sys.executable, "-c", script.replace("'onnx'", "'torch'")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "HEAVY ['torch', 'transformers']" in done.stderr
