"""int8 quantization of an exported `model.onnx` with Optimum's `ORTQuantizer`.

Must not import fer_hf.data, training, hub, inference or cli.
"""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np
from transformers import PretrainedConfig

QUANTIZE_MODES = ("dynamic", "static")
QUANTIZED_FILE_NAME = "model_quantized.onnx"
CALIBRATION_MEMORY_BYTES = 1 << 30  # activations kept alive per calibration batch


def cpu_target() -> str:
    """The `AutoQuantizationConfig` preset for this CPU: "arm64" or "avx2".

    x86 uses the AVX2 preset (uint8 weights and activations) even where AVX-512 VNNI exists: its
    kernels run on every x86-64 CPU without the int8 saturation that uint8 x int8 products hit
    on AVX2-only CPUs, so an exported file stays safe to copy to another machine.
    """
    return "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "avx2"


def quantize(
    model_path: str | Path,
    mode: str,
    config: PretrainedConfig,
    calibration_pixel_values: np.ndarray | None = None,
    output_dir: str | Path | None = None,
) -> Path:
    """Quantize `model_path` to int8: writes `model_quantized.onnx` and `ort_config.json`.

    The graph first goes through ONNX Runtime's quantization pre-processing (shape inference,
    constant folding), so every convolution bias is an initializer the quantizer can fold.

    Args:
        model_path: the fp32 ONNX file.
        mode: "dynamic" (int8 weights; activations quantized on the fly: ConvInteger,
            MatMulInteger) or "static" (activation ranges calibrated once, min/max, on
            `calibration_pixel_values`; QOperator format: QLinearConv, QLinearAdd, QGemm). On
            CNNs static is the fast one; dynamic suits MatMul-heavy models such as ViTs.
        config: the model config (Optimum saves it beside the quantized file; never read back).
        calibration_pixel_values: `(N, C, H, W)` float32 preprocessed images, required for static.
        output_dir: where to write; defaults to the folder of `model_path`.
    Returns the quantized file's path.
    """
    from onnxruntime.quantization import QuantFormat, QuantizationMode
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import (
        ORT_DEFAULT_OPS_STATIC_QUANTIZATION_QOPS,
        AutoCalibrationConfig,
        AutoQuantizationConfig,
    )

    if mode not in QUANTIZE_MODES:
        raise ValueError(f"Unknown quantization mode {mode!r}; expected one of {QUANTIZE_MODES}.")
    model_path = Path(model_path)
    output_dir = Path(output_dir) if output_dir is not None else model_path.parent
    is_static = mode == "static"
    if is_static and (calibration_pixel_values is None or len(calibration_pixel_values) == 0):
        raise ValueError(
            "Static quantization needs calibration images: pass --calibration DATA (a `fer-hf "
            "prepare` folder, a class-folder tree or a folder of face images)."
        )
    qconfig = getattr(AutoQuantizationConfig, cpu_target())(is_static=is_static, per_channel=True)
    if is_static:
        # QOperator kernels with uint8 weights run ~2x faster than QDQ here (the QDQ->QLinearConv
        # fusion wants int8 weights); measured on the default factorized model, see the README.
        qconfig.format = QuantFormat.QOperator
        qconfig.mode = QuantizationMode.QLinearOps
        qconfig.operators_to_quantize = list(ORT_DEFAULT_OPS_STATIC_QUANTIZATION_QOPS)
    with tempfile.TemporaryDirectory(prefix="fer_hf_quantize_") as tmp:
        prepared = Path(tmp) / model_path.name
        quant_pre_process(str(model_path), str(prepared))
        _unshare_initializers(prepared)
        quantizer = ORTQuantizer(prepared, config=config)
        ranges = None
        if is_static:
            from datasets import Dataset

            dataset = Dataset.from_dict({"pixel_values": list(calibration_pixel_values)})
            dataset.set_format("numpy")
            ranges = quantizer.fit(
                dataset,
                AutoCalibrationConfig.minmax(dataset),
                onnx_augmented_model_name=Path(tmp) / "augmented_model.onnx",
                batch_size=min(len(dataset), _calibration_batch_size(prepared)),
            )
        # Optimum also writes config.json and the processor into its save_dir: keep it a scratch
        # folder so the export's own files are never overwritten.
        root = logging.getLogger()
        root.addFilter(_skip_integer_tensor_notes)
        try:
            quantizer.quantize(
                qconfig, save_dir=Path(tmp) / "out", calibration_tensors_range=ranges
            )
        finally:
            root.removeFilter(_skip_integer_tensor_notes)
        target = output_dir / QUANTIZED_FILE_NAME
        shutil.move(Path(tmp) / "out" / f"{prepared.stem}_quantized.onnx", target)
        shutil.move(Path(tmp) / "out" / "ort_config.json", output_dir / "ort_config.json")
    return target


def _skip_integer_tensor_notes(record: logging.LogRecord) -> bool:
    """Drop ONNX Runtime's per-tensor warnings about int64 shape tensors (never quantized)."""
    return not record.getMessage().startswith("Inference failed or unsupported type to quantize")


def _calibration_batch_size(path: Path, budget_bytes: int = CALIBRATION_MEMORY_BYTES) -> int:
    """Largest calibration batch (<= 32) whose activations fit in `budget_bytes`.

    ONNX Runtime's calibration session keeps every intermediate tensor of a batch alive (a ViT-B
    at 224 px holds ~0.8 GB per image), so the batch size follows the model's activation size,
    read from the shapes that the quantization pre-processing inferred.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    per_image = 0
    for info in graph.value_info:
        dims = info.type.tensor_type.shape.dim
        per_image += 4 * int(np.prod([d.dim_value if d.dim_value > 0 else 1 for d in dims]))
    per_image *= 2  # measured: the session's peak is about twice the inferred activations
    return int(max(1, min(32, budget_bytes // max(per_image, 1))))


def _unshare_initializers(path: Path) -> None:
    """Give every consumer of a shared initializer its own copy, in place.

    The PyTorch exporter merges identical constants (e.g. the all-zero biases of an untrained
    ViT), and the quantizer then quantizes one tensor for two roles (an int32 Conv bias and a
    uint8 Add input), which ONNX Runtime rejects as an invalid graph.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    seen: set[str] = set()
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name not in initializers:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(initializers[name])
                copy.name = f"{name}__{node.name or node.op_type}_{i}"
                graph.initializer.append(copy)
                node.input[i] = copy.name
            else:
                seen.add(name)
    onnx.save(model, str(path))


def quantized_op_types(path: str | Path) -> set[str]:
    """Op types in an ONNX file that carry int8 arithmetic or (de)quantization."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    return {
        op
        for op in ops
        if op.startswith("QLinear")
        or op.endswith("Integer")
        or op in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
    }
