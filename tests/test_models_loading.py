"""Saved folders: round trip, Auto classes, pipeline, fresh-process remote code, `fer-hf init`,
initialising from a pretrained backbone, and clear errors for mismatched label counts."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    ResNetForImageClassification,
    ResNetModel,
    ViTModel,
    pipeline,
)

from fer_hf.cli import main
from fer_hf.labels import EXPRESSIONS_8, class_names
from fer_hf.models import (
    MODEL_KINDS,
    FactorizedModel,
    FerForExpressionRecognition,
    FerImageProcessor,
    build_model,
    from_pretrained_backbone,
    register,
    tiny_config,
)

SIZE = 32
CODE_FILES = {
    "configuration_fer.py",
    "configuration_factorized.py",
    "modeling_fer.py",
    "modeling_factorized.py",
    "image_processing_fer.py",
}


def comparable(config) -> dict:
    """The config as a dict without the fields loading sets (`_name_or_path`, `dtype`)."""
    drop = {"_name_or_path", "dtype"}
    out = {k: v for k, v in config.to_dict().items() if k not in drop}
    if "backbone_config" in out:
        out["backbone_config"] = {k: v for k, v in out["backbone_config"].items() if k not in drop}
    return out


def save_tiny(kind, folder, **kwargs):
    torch.manual_seed(0)
    model, processor = build_model(
        kind, image_size=SIZE, backbone_config=tiny_config(kind), **kwargs
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model.eval(), processor


def face_png(path):
    image = Image.new("RGB", (64, 64), (180, 140, 120))
    draw = ImageDraw.Draw(image)
    draw.ellipse((14, 18, 26, 28), fill=(20, 20, 20))
    draw.ellipse((38, 18, 50, 28), fill=(20, 20, 20))
    draw.arc((18, 34, 46, 52), 0, 180, fill=(120, 0, 0), width=3)
    image.save(path)
    return path


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_save_load_round_trip(kind, tmp_path):
    model, _ = save_tiny(kind, tmp_path, valence_arousal=True, num_classes=8)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} | CODE_FILES <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForImageClassification"] == "modeling_fer.FerForExpressionRecognition"
    again = FerForExpressionRecognition.from_pretrained(tmp_path).eval()
    assert comparable(again.config) == comparable(model.config)
    x = torch.randn(2, model.config.num_channels, SIZE, SIZE)
    with torch.no_grad():
        a, b = model(x), again(x)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.valence_arousal, b.valence_arousal)


def test_auto_classes_and_pipeline_in_process(tmp_path):
    save_tiny("factorized", tmp_path)
    register()
    register()  # idempotent
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "FerConfig"
    assert isinstance(AutoModel.from_pretrained(tmp_path), FerForExpressionRecognition)
    assert isinstance(
        AutoModelForImageClassification.from_pretrained(tmp_path), FerForExpressionRecognition
    )
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), FerImageProcessor)
    assert isinstance(AutoModel.from_config(tiny_config("factorized")), FactorizedModel)
    classifier = pipeline("image-classification", model=str(tmp_path), top_k=7)
    predictions = classifier(Image.open(face_png(tmp_path / "face.png")))
    assert {p["label"] for p in predictions} == set(class_names(7))
    assert abs(sum(p["score"] for p in predictions) - 1) < 1e-5


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    result = {}
    for folder in sys.argv[2:]:
        model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        pixels = processor(Image.open(sys.argv[1]), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            logits = model.eval()(pixels).logits
        np.save(folder + "/fresh_logits.npy", logits.numpy())
        classifier = pipeline(
            "image-classification", model=folder, trust_remote_code=True,
            top_k=model.config.num_labels,
        )
        result[folder] = {
            "pipeline": [p["label"] for p in classifier(sys.argv[1])],
            "model_class": type(model).__name__,
        }
    result["fer_hf_imported"] = any(name.split(".")[0] == "fer_hf" for name in sys.modules)
    print(json.dumps(result))
    """
)


def test_fresh_process_without_fer_hf_loads_every_kind(tmp_path):
    """One subprocess for all kinds: remote code only, identical logits, emotion names."""
    image = face_png(tmp_path / "face.png")
    folders, expected = [], {}
    for kind in MODEL_KINDS:
        folder = tmp_path / kind
        model, processor = save_tiny(kind, folder, num_classes=8 if kind == "vit" else 7)
        pixels = processor(Image.open(image), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            expected[str(folder)] = model(pixels).logits.numpy()
        folders.append(str(folder))
    init_folder = tmp_path / "init_factorized"
    assert main(["init", "factorized", "--output", str(init_folder)]) == 0
    folders.append(str(init_folder))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PYTHONPATH": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(image), *folders],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result.pop("fer_hf_imported") is False
    for folder in folders:
        assert result[folder]["model_class"] == "FerForExpressionRecognition"
        assert set(result[folder]["pipeline"]) <= set(EXPRESSIONS_8)
        assert len(result[folder]["pipeline"]) == (8 if folder.endswith("vit") else 7)
        if folder in expected:
            fresh = np.load(os.path.join(folder, "fresh_logits.npy"))
            # Same weights and inputs; only float summation order may differ between processes.
            np.testing.assert_allclose(fresh, expected[folder], rtol=1e-5, atol=1e-6)


def test_cli_init_options_and_refuses_non_empty_output(tmp_path, capsys):
    out = tmp_path / "vit"
    code = main(
        [
            "init",
            "vit",
            "--output",
            str(out),
            "--image-size",
            "48",
            "--classes",
            "8",
            "--valence-arousal",
        ]
    )
    assert code == 0
    model = FerForExpressionRecognition.from_pretrained(out)
    assert model.config.num_labels == 8 and model.config.valence_arousal
    assert model.config.image_size == 48 and model.config.backbone_config.patch_size == 6
    processor = AutoImageProcessor.from_pretrained(out, trust_remote_code=True)
    assert processor.size == {"height": 48, "width": 48} and not processor.do_grayscale
    assert main(["init", "factorized", "--output", str(out)]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err


def test_mismatched_label_count_when_loading(tmp_path):
    save_tiny("factorized", tmp_path)
    with pytest.raises(ValueError, match=r"holds a model with 7 labels .* but 8 labels"):
        FerForExpressionRecognition.from_pretrained(tmp_path, num_labels=8)
    register()
    with pytest.raises(ValueError, match="from_pretrained_backbone"):
        AutoModelForImageClassification.from_pretrained(
            tmp_path, id2label=dict(enumerate(EXPRESSIONS_8))
        )


def assert_same_backbone(model, source_state, prefix=""):
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, source_state[prefix + key]), key


def test_from_pretrained_resnet_backbone_reinitialises_the_head(tmp_path, caplog):
    torch.manual_seed(0)
    source = ResNetModel(tiny_config("baseline"))
    source.save_pretrained(tmp_path / "resnet")
    with caplog.at_level(logging.WARNING):
        model, processor = from_pretrained_backbone(
            "baseline", tmp_path / "resnet", image_size=SIZE, valence_arousal=True
        )
    assert_same_backbone(model, source.state_dict())
    assert "newly initialised" in caplog.text and "7-class expression head" in caplog.text
    assert model.config.num_labels == 7 and model.valence_arousal is not None
    assert processor.image_mean == [0.485, 0.456, 0.406]  # ImageNet defaults for ResNets
    assert model(torch.randn(1, 3, SIZE, SIZE)).logits.shape == (1, 7)

    # A classifier checkpoint (ImageNet-style head of another size) works the same way.
    classifier = ResNetForImageClassification(tiny_config("baseline"))
    classifier.save_pretrained(tmp_path / "resnet_cls")
    model, _ = from_pretrained_backbone("baseline", tmp_path / "resnet_cls", image_size=SIZE)
    assert_same_backbone(model, classifier.state_dict(), prefix="resnet.")


def test_from_pretrained_vit_backbone_resizes_positions(tmp_path):
    torch.manual_seed(0)
    source = ViTModel(tiny_config("vit"))  # 32 px, patch 8, with a pooler we do not use
    source.save_pretrained(tmp_path / "vit")
    model, _ = from_pretrained_backbone("vit", tmp_path / "vit")
    assert_same_backbone(model, source.state_dict())
    bigger, processor = from_pretrained_backbone("vit", tmp_path / "vit", image_size=48)
    positions = bigger.backbone.embeddings.position_embeddings
    assert positions.shape == (1, 1 + 6 * 6, 16)
    assert torch.equal(positions[:, 0], source.embeddings.position_embeddings[:, 0])
    assert processor.size == {"height": 48, "width": 48}
    assert bigger(torch.randn(1, 3, 48, 48)).logits.shape == (1, 7)


def test_from_pretrained_fer_model_changes_the_label_set(tmp_path):
    source, _ = save_tiny("factorized", tmp_path / "affectnet", num_classes=8)
    model, processor = from_pretrained_backbone("factorized", tmp_path / "affectnet")
    assert_same_backbone(model, source.backbone.state_dict())
    assert model.config.num_labels == 7 and processor.do_grayscale
    assert comparable(model.config.backbone_config) == comparable(source.config.backbone_config)


def test_from_pretrained_backbone_errors(tmp_path):
    ResNetModel(tiny_config("baseline")).save_pretrained(tmp_path / "resnet")
    with pytest.raises(ValueError, match="holds a 'resnet' backbone but kind 'vit' needs 'vit'"):
        from_pretrained_backbone("vit", tmp_path / "resnet")
    with pytest.raises(ValueError, match="takes 3 input channels, got num_channels=1"):
        from_pretrained_backbone("baseline", tmp_path / "resnet", num_channels=1)
    with pytest.raises(ValueError, match="do not fit the requested backbone config"):
        from_pretrained_backbone(
            "baseline", tmp_path / "resnet", image_size=SIZE, hidden_sizes=[8, 32]
        )
    with pytest.raises(FileNotFoundError, match="is not a local model folder"):
        from_pretrained_backbone("baseline", tmp_path / "missing")
