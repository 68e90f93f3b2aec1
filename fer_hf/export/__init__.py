"""ONNX export (Optimum `OnnxConfig`s), int8 quantization (`ORTQuantizer`) and parity checks.

Takes its images from the caller. Must not import fer_hf.data, training, hub or cli; of inference
only `inference.runtime` (the ONNX Runtime session, through speed.py).
"""

from .convert import FP32_ATOL, ONNX_FILE_NAME, export_model, format_report
from .onnx_config import ONNX_CONFIGS, FerOnnxConfig, onnx_config_for
from .quantization import (
    QUANTIZE_MODES,
    QUANTIZED_FILE_NAME,
    QuantizationResult,
    quantize,
    quantized_op_types,
)

__all__ = [
    "FP32_ATOL",
    "ONNX_CONFIGS",
    "ONNX_FILE_NAME",
    "QUANTIZED_FILE_NAME",
    "QUANTIZE_MODES",
    "FerOnnxConfig",
    "QuantizationResult",
    "export_model",
    "format_report",
    "onnx_config_for",
    "quantize",
    "quantized_op_types",
]
