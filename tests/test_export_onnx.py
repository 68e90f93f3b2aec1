"""ONNX export (Optimum OnnxConfig), int8 quantization and parity reports, on tiny models."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from fer_hf.cli import main
from fer_hf.data import image_source
from fer_hf.export import (
    ONNX_CONFIGS,
    FerOnnxConfig,
    export_model,
    onnx_config_for,
    quantized_op_types,
)
from fer_hf.models import FerConfig, build_model, init_model_folder, register, tiny_config

KINDS = ("factorized", "baseline", "vit")


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    """A tiny model folder per kind; the factorized one has the valence/arousal head."""
    root = tmp_path_factory.mktemp("tiny_models")
    folders = {}
    for kind in KINDS:
        torch.manual_seed(0)
        model, processor = build_model(
            kind,
            image_size=32,
            backbone_config=tiny_config(kind),
            valence_arousal=kind == "factorized",
        )
        folders[kind] = root / kind
        model.save_pretrained(folders[kind])
        processor.save_pretrained(folders[kind])
    return folders


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    """train/ and val/ class-folder trees of small random images (as Kaggle's FER2013 layout)."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 12)):
        for name in ("Happy", "sad", "angry"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (40, 40), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    (root / "val" / "sad" / "broken.png").write_text("not a png")
    return root


def _torch_outputs(folder, pixel_values):
    register()
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        out = model(pixel_values=torch.from_numpy(pixel_values))
    va = out.valence_arousal
    return out.logits.numpy(), None if va is None else va.numpy()


def test_every_registered_model_type_has_an_onnx_config():
    assert FerConfig.model_type in ONNX_CONFIGS
    config = onnx_config_for(FerConfig(valence_arousal=True))
    assert isinstance(config, FerOnnxConfig)
    assert list(config.outputs) == ["logits", "valence_arousal"]
    assert config.inputs == {"pixel_values": {0: "batch_size"}}
    with pytest.raises(ValueError, match="No ONNX export config for model_type 'bert'"):
        onnx_config_for(type("C", (), {"model_type": "bert"})())


@pytest.mark.parametrize("kind", KINDS)
def test_export_fp32_and_dynamic_int8(tiny_folders, tmp_path, kind):
    out = tmp_path / "onnx"
    report = export_model(tiny_folders[kind], out, quantize_mode="dynamic", measure_speed=False)
    assert json.loads((out / "parity.json").read_text()) == report
    assert report["fp32"]["passed"] and max(report["fp32"]["max_abs_diff"].values()) <= 1e-4
    expected = ["logits", "valence_arousal"] if kind == "factorized" else ["logits"]
    assert list(report["fp32"]["max_abs_diff"]) == expected

    # Independent check, at two batch sizes (the batch axis is dynamic).
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == expected
    channels = 1 if kind == "factorized" else 3  # the factorized default is a grayscale net
    for batch in (1, 5):
        shape = (batch, channels, 32, 32)
        pixels = np.random.default_rng(batch).standard_normal(shape, dtype=np.float32)
        logits, va = _torch_outputs(tiny_folders[kind], pixels)
        onnx_out = session.run(None, {"pixel_values": pixels})
        np.testing.assert_allclose(onnx_out[0], logits, atol=1e-4, rtol=0)
        if va is not None:
            np.testing.assert_allclose(onnx_out[1], va, atol=1e-4, rtol=0)

    int8 = report["int8"]
    assert int8["mode"] == "dynamic"
    assert report["fp32"]["accuracy"] is None and "accuracy" not in int8  # unlabelled sample
    assert list(int8["max_abs_diff_vs_fp32"]) == expected
    assert {"ConvInteger", "DynamicQuantizeLinear"} <= quantized_op_types(out / int8["file"])
    assert set(int8["quantized_ops"]) == quantized_op_types(out / int8["file"])
    assert int8["passed"] == (int8["top1_agreement_with_fp32"] >= 0.99)
    if kind != "vit":  # a near-uniform untrained tiny ViT may flip a few near-ties
        assert int8["top1_agreement_with_fp32"] >= 0.99
    for name in ("config.json", "preprocessor_config.json", "modeling_fer.py", "ort_config.json"):
        assert (out / name).is_file()


def test_a_crop_trained_model_exports_at_its_centre_crop(tiny_folders, class_folders, tmp_path):
    folder = tmp_path / "cropped"
    shutil.copytree(tiny_folders["baseline"], folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    config["crop_size"] = {"height": 24, "width": 24}  # 24 px centre crops of the 32 px face
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    report = export_model(
        folder, tmp_path / "onnx", quantize_mode="static", data=image_source(class_folders),
        measure_speed=False,
    )  # fmt: skip
    assert report["fp32"]["passed"] and "passed" in report["int8"]
    session = ort.InferenceSession(
        str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert session.get_inputs()[0].shape[1:] == [3, 24, 24]
    saved = json.loads((tmp_path / "onnx" / "preprocessor_config.json").read_text())
    assert saved["crop_size"] == {"height": 24, "width": 24}


@pytest.mark.parametrize("kind", KINDS)
def test_static_int8_calibrated_on_class_folders(tiny_folders, class_folders, tmp_path, kind):
    out = tmp_path / "onnx"
    report = export_model(
        tiny_folders[kind],
        out,
        quantize_mode="static",
        data=image_source(class_folders),
        measure_speed=False,
    )
    assert report["sample"]["source"].endswith("val")
    assert report["sample"]["labelled"] and report["sample"]["skipped_files"] == 1
    assert report["calibration_sample"]["source"].endswith("train")
    int8 = report["int8"]
    # The ViT's only convolution (the patch embedding) reads the input, so it stays fp32.
    assert ("QLinearMatMul" if kind == "vit" else "QLinearConv") in int8["quantized_ops"]
    search = int8["prefix_search"]
    if kind == "vit":  # the fp32-prefix search is for CNNs
        assert search is None
    else:
        assert search["check_images"] == 24  # too few held-out training images: all 24
        assert search["agreement"] == max(search["agreement_by_prefix"])
        assert search["agreement_by_prefix"].index(search["agreement"]) == search["prefix"]
    assert 0.0 <= report["fp32"]["accuracy"] <= 1.0
    drop = 100 * (report["fp32"]["accuracy"] - int8["accuracy"])
    assert int8["accuracy_drop_points"] == pytest.approx(drop)
    assert int8["passed"] == (int8["top1_agreement_with_fp32"] >= 0.99 and drop <= 0.5)
    assert report["passed"] == (report["fp32"]["passed"] and int8["passed"])


def _producers(path):
    import onnx

    graph = onnx.load(str(path)).graph
    return {out: node.op_type for node in graph.node for out in node.output}, graph


def test_static_int8_keeps_input_conv_and_output_layers_in_fp32(
    tiny_folders, class_folders, tmp_path
):
    """Static int8 never rounds the 8-bit pixels or the logits; a prefix of layers may stay fp32."""
    out = tmp_path / "onnx"
    report = export_model(
        tiny_folders["factorized"],
        out,
        "static",
        data=image_source(class_folders),
        measure_speed=False,
    )
    int8 = report["int8"]
    by_design = int8["float_nodes"][:3]
    assert by_design[0].endswith("stem.0/Conv")
    assert by_design[1:] == ["/classifier/Gemm", "/valence_arousal/Gemm"]
    prefix = int8["float_nodes"][3:]
    assert len(prefix) == int8["prefix_search"]["prefix"]
    producer, graph = _producers(out / "model_quantized.onnx")
    assert producer["logits"] == "Gemm"  # float logits: no uint8 ties
    tanh = next(node for node in graph.node if node.op_type == "Tanh")
    assert producer[tanh.input[0]] == "Gemm"
    first = next(node for node in graph.node if "pixel_values" in node.input)
    assert first.op_type == "Conv"
    for name in prefix:  # the prefix convolutions run in fp32 too
        assert any(node.name == name and node.op_type == "Conv" for node in graph.node)

    # Without the search only the input convolution and the two heads stay fp32.
    plain = export_model(
        tiny_folders["factorized"],
        tmp_path / "plain",
        "static",
        data=image_source(class_folders),
        measure_speed=False,
        int8_target_agreement=None,
    )
    assert plain["int8"]["float_nodes"] == by_design and plain["int8"]["prefix_search"] is None
    assert plain["calibration_sample"]["num_check_images"] == 0
    with pytest.raises(
        ValueError, match="`int8_target_agreement` must be in \\(0, 1\\] or None, got 1.5"
    ):
        export_model(
            tiny_folders["factorized"],
            tmp_path / "x",
            "static",
            data=image_source(class_folders),
            measure_speed=False,
            int8_target_agreement=1.5,
        )


def test_quantized_default_model_is_smaller_and_timed(tmp_path, class_folders):
    folder = init_model_folder("factorized", tmp_path / "model")
    report = export_model(folder, tmp_path / "onnx", "static", data=image_source(class_folders))
    assert report["int8"]["size_bytes"] < 0.5 * report["int8"]["fp32_size_bytes"]
    speed = report["speed_1_thread"]
    assert speed["fastest_batch1"] in ("model.onnx", "model_quantized.onnx")
    assert speed["model_quantized.onnx"]["latency_ms_median"] > 0


def test_ort_folder_loads_in_optimum_and_pipeline(tiny_folders, tmp_path):
    from optimum.onnxruntime import ORTModelForImageClassification
    from transformers import AutoImageProcessor, pipeline

    out = tmp_path / "onnx"
    export_model(tiny_folders["factorized"], out, "dynamic", measure_speed=False)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 40, 3), np.uint8))
    processor = AutoImageProcessor.from_pretrained(out)
    pixels = processor(images=image, return_tensors="np")["pixel_values"]
    logits, _ = _torch_outputs(tiny_folders["factorized"], pixels)
    for file_name in ("model.onnx", "model_quantized.onnx"):
        model = ORTModelForImageClassification.from_pretrained(out, file_name=file_name)
        classifier = pipeline("image-classification", model=model, image_processor=processor)
        result = classifier(image, top_k=len(model.config.id2label))
        assert {r["label"] for r in result} == set(model.config.id2label.values())
        assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-5)
        if file_name == "model.onnx":
            assert result[0]["label"] == model.config.id2label[int(logits.argmax())]


def test_export_folder_loads_without_fer_hf(tiny_folders, tmp_path):
    """trust_remote_code: a fresh process that never imports fer_hf loads the ORT folder."""
    out = tmp_path / "onnx"
    export_model(tiny_folders["baseline"], out, measure_speed=False)
    code = (
        "import sys\n"
        "from optimum.onnxruntime import ORTModelForImageClassification\n"
        f"m = ORTModelForImageClassification.from_pretrained({str(out)!r},\n"
        "                                                   trust_remote_code=True)\n"
        "import numpy as np\n"
        "print(m(pixel_values=np.zeros((2, 3, 32, 32), np.float32)).logits.shape)\n"
        "assert not any(name.startswith('fer_hf') for name in sys.modules)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(2, 7)" in done.stdout


def test_export_errors(tiny_folders, tmp_path):
    folder = tiny_folders["factorized"]
    with pytest.raises(TypeError, match="pass fer_hf.data.image_source\\(path\\)"):
        export_model(folder, tmp_path / "x", data=str(tmp_path))
    with pytest.raises(ValueError, match="--quantize static needs --calibration DATA"):
        export_model(folder, tmp_path / "x", quantize_mode="static")
    with pytest.raises(ValueError, match="Unknown --quantize 'int4'"):
        export_model(folder, tmp_path / "x", quantize_mode="int4")
    with pytest.raises(ValueError, match="is the model folder itself"):
        export_model(folder, folder)
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        export_model(tmp_path / "missing", tmp_path / "x")


def test_cli_export(tiny_folders, class_folders, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["export", str(tiny_folders["baseline"]), "--output", str(out), "--quantize", "static"]
    args += ["--calibration", str(class_folders), "--num-samples", "16", "--no-speed"]
    code = main(args)
    report = json.loads((out / "parity.json").read_text())
    assert code == (0 if report["passed"] else 1)
    assert report["sample"]["num_images"] == 16
    printed = capsys.readouterr().out
    assert "max |diff| vs PyTorch" in printed and "top-1 agreement" in printed
    assert "nodes kept in fp32" in printed
    assert main(["export", str(tmp_path / "nope"), "--output", str(out)]) == 2
    assert "not a model folder" in capsys.readouterr().err
    # Re-exporting without --quantize leaves no stale int8 file behind.
    assert main(["export", str(tiny_folders["baseline"]), "--output", str(out), "--no-speed"]) == 0
    assert not (out / "model_quantized.onnx").exists() and (out / "model.onnx").exists()
