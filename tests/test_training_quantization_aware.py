"""Quantization-aware fine-tuning: the simulator against ONNX Runtime's int8 graph, its
invisibility outside `simulate()`, and tiny QAT runs (one process and 2-process CPU DDP)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from helpers_training import prepared_dataset, tiny_model_overrides
from onnx import numpy_helper
from safetensors.torch import load_file
from test_training_run import flags, launch_two_cpu_processes, run

from fer_hf.export import export_model
from fer_hf.export.quantization import quantize
from fer_hf.models import build_model
from fer_hf.models.modeling_factorized import ActivationClamp, ConvNormAct
from fer_hf.training.precision import cpu_flags
from fer_hf.training.quantization_aware import (
    QuantizationSimulator,
    calibrate_activation_clips,
    weight_qparams,
    with_activation_clips,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepared_dataset(tmp_path_factory.mktemp("data"))


def _tiny_factorized(seed: int = 0, valence_arousal: bool = True, clip: bool = False):
    """A tiny factorized model with non-trivial batch-norm statistics (so folding matters);
    with `clip`, its activation clamps are set at the 0.99 quantile of random images."""
    torch.manual_seed(seed)
    backbone = tiny_model_overrides()["backbone_config"]
    backbone.se_ratio = 0.0  # the default; squeeze-excitation is not simulated
    model, processor = build_model(
        "factorized", image_size=32, valence_arousal=valence_arousal, backbone_config=backbone
    )
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.3, 0.3)
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    if clip:
        model = with_activation_clips(model.eval())
        calibrate_activation_clips(model, _pixels(32, 5), 0.99)
    return model.eval(), processor


def _pixels(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, 1, 32, 32), generator=generator) * 2 - 1


@pytest.mark.parametrize("clip", [False, True], ids=["plain", "clipped"])
def test_simulated_grids_are_onnx_runtimes(tmp_path, clip):
    model, processor = _tiny_factorized(clip=clip)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "onnx", measure_speed=False)
    calibration, check = _pixels(64, 1), _pixels(128, 2)
    (tmp_path / "int8").mkdir()
    result = quantize(
        tmp_path / "onnx" / "model.onnx",
        "static",
        model.config,
        calibration_pixel_values=calibration.numpy(),
        output_dir=tmp_path / "int8",
    )
    graph = onnx.load(str(result.path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "QLinearConv"]
    # Clips fold into the int8 producers; only the fp32 stem's stays.
    assert sum(n.op_type == "Clip" for n in graph.node) == (1 if clip else 0)

    simulator = QuantizationSimulator(model)
    # Weights: the int8 values ORT stores are the simulator's grid of the BN-folded weights.
    blocks = [
        m
        for name, m in model.backbone.named_modules()
        if isinstance(m, ConvNormAct) and not name.startswith("stem")
    ]
    assert len(blocks) == len(convs) == len(simulator.quantized_convs)
    for block, node in zip(blocks, convs, strict=True):
        conv, norm = block[0], block[1]
        folded = (
            conv.weight
            * (norm.weight / torch.sqrt(norm.running_var + norm.eps))[:, None, None, None]
        )
        scale, zero_point = weight_qparams(folded)
        grid = torch.round(folded / scale[:, None, None, None]).clamp(-127, 127)
        np.testing.assert_array_equal(grid.detach().numpy(), init[node.input[3]])
        np.testing.assert_allclose(scale.numpy(), init[node.input[4]], rtol=1e-6)
        assert not zero_point.any() and not init[node.input[5]].any()

    # Activations: the same scales and zero points as ORT's min/max calibration.
    simulator.calibrate(calibration)
    ours = sorted((o.scale, o.zero_point) for o in simulator.observers)
    theirs = sorted(
        (float(init[name]), int(init[name.removesuffix("scale") + "zero_point"]))
        for name in init
        if name.endswith("_output_0_scale") and init[name].size == 1
    )
    assert len(ours) == len(theirs)
    for (scale, zero_point), (ort_scale, ort_zero_point) in zip(ours, theirs, strict=True):
        assert scale == pytest.approx(ort_scale, rel=1e-5) and zero_point == ort_zero_point

    # End to end: the simulated int8 logits sit closer to ORT's int8 than the fp32 ones do.
    import onnxruntime as ort

    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    int8 = session.run(["logits"], {"pixel_values": check.numpy()})[0]
    with torch.no_grad():
        fp32 = model(pixel_values=check).logits.numpy()
        with simulator.simulate():
            simulated = model(pixel_values=check).logits.numpy()
    if not {"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags():
        # Without VNNI, ORT's u8s8 convolutions add pairs of products in saturating int16
        # (VPMADDUBSW, ORT's quantization docs), which the simulator's exact sums do not model.
        pytest.skip("ORT's int8 convolutions saturate on this CPU (no VNNI): not comparable")
    assert np.abs(simulated - int8).mean() < 0.5 * np.abs(fp32 - int8).mean()


def test_simulator_changes_nothing_outside_simulate():
    model, _ = _tiny_factorized(valence_arousal=False)
    x = _pixels(8, 3)
    with torch.no_grad():
        before = model(pixel_values=x).logits
    keys = list(model.state_dict())
    simulator = QuantizationSimulator(model)
    with pytest.raises(RuntimeError, match="calibrate"):
        with simulator.simulate():
            pass
    simulator.calibrate(_pixels(16, 4))
    model.train()
    stats = model.backbone.head[1].running_mean.clone()
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, before)  # BN and dropout frozen
        with simulator.simulate():
            simulated = model(pixel_values=x).logits
    assert torch.equal(model.backbone.head[1].running_mean, stats)
    assert not torch.equal(simulated, before)
    assert torch.allclose(simulated, before, atol=0.5)
    assert list(model.state_dict()) == keys
    simulator.remove()
    assert all("_conv_forward" not in vars(m) for m in model.modules())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, before)


def test_activation_clips_start_as_the_identity_then_bound_the_activations(tmp_path):
    model, processor = _tiny_factorized(valence_arousal=False)
    x = _pixels(16, 6)
    with torch.no_grad():
        plain = model(pixel_values=x).logits
    clipped = with_activation_clips(model)
    assert clipped.config.backbone_config.clip_activations and clipped is not model
    assert not model.config.backbone_config.clip_activations  # the input model is untouched
    assert with_activation_clips(clipped) is clipped
    clamps = [m for m in clipped.modules() if isinstance(m, ActivationClamp)]
    # every conv block; ReLUs became clips to [0, high]
    assert len(clamps) == sum(isinstance(m, ConvNormAct) for m in clipped.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in clipped.backbone.modules())
    with torch.no_grad():
        assert torch.equal(clipped(pixel_values=x).logits, plain)
    calibration = _pixels(32, 7)
    seen = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, i, n=n: seen.setdefault(n, i[0].clone()))
        for n, m in clipped.named_modules()
        if isinstance(m, ActivationClamp)
    ]
    bounds = calibrate_activation_clips(clipped, calibration, 0.9)
    for hook in hooks:
        hook.remove()
    for name, (low, high) in bounds.items():
        values = seen[name]  # the first batch is all 32 images
        assert np.isfinite(high) and (values > high).float().mean() == pytest.approx(0.1, abs=0.02)
        if dict(clipped.named_modules())[name].fixed_low:
            assert low == 0.0
        else:
            assert (values < low).float().mean() == pytest.approx(0.1, abs=0.02)
    with torch.no_grad():
        bounded = clipped(pixel_values=x).logits
    assert not torch.equal(bounded, plain)
    clipped.save_pretrained(tmp_path / "clipped")
    from transformers import AutoModelForImageClassification

    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "clipped").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=x).logits, bounded)
    with pytest.raises(ValueError, match="quantile"):
        calibrate_activation_clips(clipped, calibration, 0.2)
    with pytest.raises(ValueError, match="no activation clamps"):
        calibrate_activation_clips(model, calibration, 0.99)


def test_simulator_refuses_other_backbones_and_squeeze_excitation():
    model, _ = build_model("baseline", image_size=32, **tiny_model_overrides("baseline"))
    with pytest.raises(ValueError, match="factorized backbone"):
        QuantizationSimulator(model)
    model, _ = build_model("factorized", image_size=32, **tiny_model_overrides())
    with pytest.raises(ValueError, match="squeeze-excitation"):
        QuantizationSimulator(model)


def _start_folder(tmp_path):
    model, processor = _tiny_factorized(valence_arousal=False)
    model.save_pretrained(tmp_path / "start")
    processor.save_pretrained(tmp_path / "start")
    return tmp_path / "start", set(model.state_dict())


def _qat_flags(data, output, start, *extra):
    argv = flags(data, output, "--model_name_or_path", str(start), "--quantization_aware", "true")
    for flag in ("--model_overrides", "--image_size"):
        index = argv.index(flag)
        del argv[index : index + 2]
    return [*argv, "--qat_calibration_steps", "2", "--qat_calibration_samples", "16", *extra]


@pytest.mark.parametrize("clip", [False, True], ids=["plain", "clipped"])
def test_quantization_aware_fine_tune(data, tmp_path, clip):
    start, keys = _start_folder(tmp_path)
    extra = ["--qat_clip_percentile", "0.999"] if clip else []
    summary = run(_qat_flags(data, tmp_path / "run", start, "--max_steps", "4", *extra))
    assert summary["global_step"] == 4
    assert summary["hyperparameters"]["loss"]["quantization_aware"] is True
    assert summary["hyperparameters"]["loss"]["qat_clip_percentile"] == (0.999 if clip else None)
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    agreement = [log["qat_agreement"] for log in state["log_history"] if "qat_agreement" in log]
    assert len(agreement) == 4 and all(0 <= a <= 1 for a in agreement)
    saved = load_file(tmp_path / "run" / "model.safetensors")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backbone_config"]["clip_activations"] is clip
    if not clip:
        assert set(saved) == keys  # a plain fer-hf model
    else:  # plus the clamp bounds, finite and saved
        added = set(saved) - keys
        assert added and all(k.endswith((".low", ".high")) for k in added)
        assert all(torch.isfinite(saved[k]) for k in added if k.endswith(".high"))


def test_quantization_aware_refused_for_other_kinds(data, tmp_path):
    argv = flags(data, tmp_path / "run", "--model_kind", "baseline", "--quantization_aware", "true")
    with pytest.raises(ValueError, match="--quantization_aware supports model_kind factorized"):
        run(argv)
    assert not (tmp_path / "run").exists()


def test_quantization_aware_two_process_cpu_ddp(data, tmp_path):
    start, _ = _start_folder(tmp_path)
    out = tmp_path / "ddp"
    launch_two_cpu_processes(
        _qat_flags(data, out, start, "--max_steps", "3", "--per_device_train_batch_size", "7")
    )
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["machine"]["num_processes"] == 2 and summary["global_step"] == 3
