"""int8 quantization of an exported `model.onnx` with Optimum's `ORTQuantizer`.

Must not import fer_hf.data, training, hub, inference or cli.
"""

from __future__ import annotations

import copy
import logging
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm
from transformers import PretrainedConfig

from ..artifacts import ORT_CONFIG_FILE, QUANTIZED_FILE_NAME
from .speed import onnx_session

QUANTIZE_MODES = ("dynamic", "static")
CALIBRATION_MEMORY_BYTES = 1 << 30  # activations kept alive per calibration batch
# The float-prefix search stops at the first prefix reaching this top-1 agreement on the check
# images, so in practice it tries every prefix up to MAX_FLOAT_PREFIX and keeps the best. The
# check images are training images, on which a model agrees more than on held-out faces: with a
# 99.5% stop, a quantization-aware release stopped at a 3-node prefix that gave 98.7% on the 3,589
# validation faces, where longer prefixes give 99.1-99.3%.
# (fer_hf.export.convert.NUM_CHECK_IMAGES says why there are 8,192 check images.)
TARGET_AGREEMENT = 0.999
MAX_FLOAT_PREFIX = 0.5  # share of the quantizable nodes the search may keep in fp32
# Ops that never make a node worth keeping in float on their own: activations fused into their
# producer, data movement, and the ops a classifier's output goes through (Linear -> tanh).
_PASSTHROUGH_OPS = frozenset(
    {"Relu", "Clip", "LeakyRelu", "Tanh", "Sigmoid", "Softmax", "Identity", "Flatten", "Reshape"}
    | {"Squeeze", "Unsqueeze", "Transpose", "Split", "Pad", "Gather", "Where", "ArgMax"}
)


@dataclass(frozen=True)
class QuantizationResult:
    """The quantized file, the nodes left in fp32 and, for static CNNs, the prefix search."""

    path: Path
    float_nodes: tuple[str, ...]
    search: dict[str, Any] | None = None


def cpu_target() -> str:
    """The `AutoQuantizationConfig` preset for this CPU: "arm64" or "avx2".

    x86 uses the AVX2 preset (uint8 activations; with per-channel quantization the weights end up
    stored as symmetric int8, zero point 0) even where AVX-512 VNNI exists, so an exported file
    runs on every x86-64 CPU. Measured on an
    AVX-512 VNNI CPU, int8 weights with symmetric int8 activations (s8s8) were no more accurate
    and 8x slower on the factorized model (no fast s8s8 depthwise kernel in ONNX Runtime).
    """
    return "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "avx2"


def quantize(
    model_path: str | Path,
    mode: str,
    config: PretrainedConfig,
    calibration_pixel_values: np.ndarray | None = None,
    output_dir: str | Path | None = None,
    check_pixel_values: np.ndarray | None = None,
    target_agreement: float = TARGET_AGREEMENT,
) -> QuantizationResult:
    """Quantize `model_path` to int8: writes `model_quantized.onnx` and `ort_config.json`.

    The graph first goes through ONNX Runtime's quantization pre-processing (shape inference,
    constant folding), so every convolution bias is an initializer the quantizer can fold.

    Static recipe, measured on four trained factorized checkpoints (42-49% accuracy) with 3,589
    FER2013 validation images (top-1 agreement with fp32; one thread; fp32: 0.153 ms at batch 1,
    7,200 images/s at batch 64):
    - QOperator format, per-channel symmetric int8 weights, uint8 activations, min/max ranges
      over 128 training images; all int8: 97.0-97.7%, 0.106 ms, 13,000 images/s. Per-tensor
      weights lose 2.8 points and run 1.7x slower; int8 weights with symmetric int8 activations
      (s8s8) lose 1.7 points and run 8x slower; reduce_range loses 0.5 point; percentile
      (99.99, 99.999) or entropy ranges and 1,024 calibration images moved it by at most 0.3
      point, the noise level.
    - Kept in fp32 by design: the convolutions that read the network input (a calibrated uint8
      grid cannot hold 8-bit pixels exactly: the half grey-level shift alone flips 0.5% of the
      predictions; one input channel makes the int8 kernel 7x slower) and the final Gemm/MatMul
      (uint8 logits create exact ties).
    - CNNs also keep their first nodes in graph order fp32, the most sensitive ones and those
      where int8 is not faster (few channels, 9-weight depthwise kernels): with
      `check_pixel_values`, the prefix (up to half of the nodes) with the best agreement on
      them, stopping early only at `target_agreement`.
    - Post-training int8 tops out near 98.6% on the from-scratch factorized release (agreement
      on all 3,589 validation faces: 98.2% with its 12-node prefix; ranking nodes by the flips
      each causes alone, or rounding the weights onto the int8 grid before export, did no
      better). The flips are near-ties of fp32 logits.
    - What moves it is training (`train.py --quantization_aware`, see
      `fer_hf.training.quantization_aware`): 3 epochs of quantization-aware fine-tuning took
      the same model to 98.7%, and activation clips at the 99.9th percentile
      (`--qat_clip_percentile 0.999`, which ORT folds into the int8 ranges) to 99.0-99.2%
      (all-int8: 95.7% -> 98.0%). The 12-node prefix is still needed for that.

    Args:
        model_path: the fp32 ONNX file.
        mode: "dynamic" (int8 weights; activations quantized on the fly: ConvInteger,
            MatMulInteger) or "static" (activation ranges calibrated once on
            `calibration_pixel_values`: QLinearConv, QLinearAdd, QGemm). On CNNs static is the
            fast one; dynamic suits MatMul-heavy models such as ViTs.
        config: the model config (Optimum saves it beside the quantized file; never read back).
        calibration_pixel_values: `(N, C, H, W)` float32 preprocessed images, required for static.
        output_dir: where to write; defaults to the folder of `model_path`.
        check_pixel_values: static only: images (never the ones that judge the export) that
            choose the fp32 prefix; None keeps only the input convolutions and output layers fp32.
        target_agreement: the search stops at the first prefix reaching this agreement.
    Returns the quantized file's path, the nodes left in fp32 and the prefix search's summary
    (None without check images or for a model with more MatMul/Gemm than Conv nodes).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from optimum.onnxruntime import ORTQuantizer

    if mode not in QUANTIZE_MODES:
        raise ValueError(f"Unknown quantization mode {mode!r}; expected one of {QUANTIZE_MODES}.")
    if not 0.0 < target_agreement <= 1.0:
        raise ValueError(f"`target_agreement` must be in (0, 1], got {target_agreement!r}.")
    model_path = Path(model_path)
    output_dir = Path(output_dir) if output_dir is not None else model_path.parent
    is_static = mode == "static"
    if is_static and (calibration_pixel_values is None or len(calibration_pixel_values) == 0):
        raise ValueError(
            "Static quantization needs calibration images: pass --calibration DATA (a `fer-hf "
            "prepare` folder, a class-folder tree or a folder of face images)."
        )
    with tempfile.TemporaryDirectory(prefix="fer_hf_quantize_") as tmp:
        tmp = Path(tmp)
        prepared = tmp / model_path.name
        quant_pre_process(str(model_path), str(prepared))
        _unshare_initializers(prepared)
        quantizer = ORTQuantizer(prepared, config=config)
        ranges = _calibrate(quantizer, prepared, calibration_pixel_values) if is_static else None

        def build(float_nodes: list[str]) -> Path:
            """Quantize with `float_nodes` left in fp32; returns the folder written."""
            # Optimum also writes config.json and the processor into its save_dir: keep it a
            # scratch folder so the export's own files are never overwritten.
            save_dir = Path(tempfile.mkdtemp(dir=tmp))
            root = logging.getLogger()
            root.addFilter(_skip_integer_tensor_notes)
            try:
                quantizer.quantize(
                    _quantization_config(is_static, float_nodes),
                    save_dir=save_dir,
                    # The quantizer edits the ranges in place (ReLU inputs take their outputs').
                    calibration_tensors_range=copy.deepcopy(ranges),
                )
            finally:
                root.removeFilter(_skip_integer_tensor_notes)
            return save_dir

        float_nodes = _float_by_design(prepared) if is_static else []
        search = None
        if is_static and check_pixel_values is not None and len(check_pixel_values) > 0:
            float_nodes, search = _prefix_search(
                build, prepared, float_nodes, check_pixel_values, target_agreement
            )
        save_dir = build(float_nodes)
        target = output_dir / QUANTIZED_FILE_NAME
        shutil.move(save_dir / f"{prepared.stem}_quantized.onnx", target)
        shutil.move(save_dir / ORT_CONFIG_FILE, output_dir / ORT_CONFIG_FILE)
    return QuantizationResult(target, tuple(float_nodes), search)


def _quantization_config(is_static: bool, float_nodes: list[str]):
    from onnxruntime.quantization import QuantFormat, QuantizationMode
    from optimum.onnxruntime.configuration import (
        ORT_DEFAULT_OPS_STATIC_QUANTIZATION_QOPS,
        AutoQuantizationConfig,
    )

    qconfig = getattr(AutoQuantizationConfig, cpu_target())(
        is_static=is_static, per_channel=True, nodes_to_exclude=list(float_nodes)
    )
    if is_static:
        # QOperator kernels with uint8 weights run ~2x faster than QDQ here (the QDQ->QLinearConv
        # fusion wants int8 weights); measured on the default factorized model, see the README.
        qconfig.format = QuantFormat.QOperator
        qconfig.mode = QuantizationMode.QLinearOps
        qconfig.operators_to_quantize = list(ORT_DEFAULT_OPS_STATIC_QUANTIZATION_QOPS)
    return qconfig


def _calibrate(quantizer, prepared: Path, pixel_values: np.ndarray) -> dict:
    """Min/max activation ranges over the calibration images."""
    from datasets import Dataset
    from optimum.onnxruntime.configuration import AutoCalibrationConfig

    dataset = Dataset.from_dict({"pixel_values": list(pixel_values)})
    dataset.set_format("numpy")
    return quantizer.fit(
        dataset,
        AutoCalibrationConfig.minmax(dataset),
        onnx_augmented_model_name=prepared.parent / "augmented_model.onnx",
        batch_size=min(len(dataset), _calibration_batch_size(prepared)),
    )


def _float_by_design(path: Path) -> list[str]:
    """Nodes static int8 leaves in fp32: convolutions on the network input, the output layers."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    inputs = {i.name for i in graph.input} - initializers
    producer = {out: node for node in graph.node for out in node.output}
    nodes = [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in inputs]
    for output in graph.output:
        node = producer.get(output.name)
        while node is not None:
            if node.op_type in ("Gemm", "MatMul"):
                nodes.append(node.name)
                break
            bias_add = node.op_type == "Add" and any(i in initializers for i in node.input)
            if bias_add:  # MatMul + Add: a Linear layer on a 3-D input
                nodes.append(node.name)
            elif node.op_type not in _PASSTHROUGH_OPS:
                break
            data = [i for i in node.input if i not in initializers]
            node = producer.get(data[0]) if data else None
    return [name for name in dict.fromkeys(nodes) if name]


def _candidates(path: Path) -> dict[str, str]:
    """Quantizable compute nodes in graph (topological) order: name -> op type."""
    import onnx
    from optimum.onnxruntime.configuration import ORT_DEFAULT_OPS_STATIC_QUANTIZATION_QOPS

    ops = set(ORT_DEFAULT_OPS_STATIC_QUANTIZATION_QOPS) - _PASSTHROUGH_OPS
    graph = onnx.load(str(path), load_external_data=False).graph
    return {node.name: node.op_type for node in graph.node if node.op_type in ops and node.name}


def _prefix_search(
    build, prepared: Path, float_nodes: list[str], check: np.ndarray, target: float
) -> tuple[list[str], dict[str, Any]]:
    """`float_nodes` + the fp32 prefix with the best agreement on `check` (shortest on ties).

    CNNs only (where it was measured): a model with more MatMul/Gemm than Conv nodes gets
    `float_nodes`, None, since each trial re-quantizes the whole graph (minutes for a ViT-B) and
    static int8 is not a ViT's fast path anyway (dynamic is).
    """
    ops = _candidates(prepared)
    candidates = [name for name in ops if name not in float_nodes]
    convolutions = sum(op == "Conv" for op in ops.values())
    if convolutions <= sum(op in ("MatMul", "Gemm") for op in ops.values()):
        return float_nodes, None
    reference = _first_output(prepared, check).argmax(-1)
    limit = int(MAX_FLOAT_PREFIX * len(candidates))
    agreements: list[float] = []
    for length in tqdm(range(limit + 1), desc="int8 fp32 prefix", unit="trial", leave=False):
        folder = build(float_nodes + candidates[:length])
        logits = _first_output(folder / f"{prepared.stem}_quantized.onnx", check)
        shutil.rmtree(folder)
        agreements.append(float(np.mean(logits.argmax(-1) == reference)))
        if agreements[-1] >= target:
            break
    best = int(np.argmax(agreements))  # the first maximum: the shortest prefix among ties
    return float_nodes + candidates[:best], {
        "check_images": len(check),
        "target_agreement": target,
        "quantizable_nodes": len(ops),
        "agreement_by_prefix": agreements,
        "prefix": best,
        "agreement": agreements[best],
    }


def _first_output(path: Path, pixel_values: np.ndarray, batch: int = 64) -> np.ndarray:
    """The graph's first output (the logits) on `pixel_values`, in batches."""
    session = onnx_session(path)
    name = session.get_outputs()[0].name
    return np.concatenate(
        [
            session.run([name], {"pixel_values": pixel_values[i : i + batch]})[0]
            for i in range(0, len(pixel_values), batch)
        ]
    )


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
