"""Rewrite a BlazeFace ONNX graph so ONNX Runtime's blocked (NCHWc) CPU kernels cover it.

    python tools/blazeface_nchwc.py fer_hf/inference/weights/blazeface_full_range.onnx

ONNX Runtime runs convolutions on x86 in a blocked channel layout (16 channels per block with
AVX-512, 8 with AVX2) and fuses a convolution with the residual `Add` and `Relu` after it, but
only where every tensor's channel count is a multiple of the block and every op on the path
supports the layout. MediaPipe's full-range BlazeFace breaks both: its bottlenecks are 8, 12, 24
and 36 channels wide, and its down-sampling blocks widen the skip path with a channel `Pad`
(which has no blocked kernel), so the graph is cut into many layout conversions and unfused
element-wise ops. Two exact rewrites fix that (`tools/blazeface_to_onnx.py` applies them):

1. A bottleneck `1x1 conv (c) -> Relu -> depthwise conv (c) -> 1x1 conv` with c not a multiple
   of 16 gets zero channels up to the next multiple (zero weights and biases: the extra
   channels stay 0 through the Relu and the depthwise conv and add nothing to the last conv).
2. `Relu(Add(Pad_channels(skip), Conv1x1(y)))`, the skip padded from c_in to c_out channels with
   zeros, becomes `Concat(Relu(Conv1x1_a(y) + skip), Relu(Conv1x1_b(y)))`, the 1x1 convolution
   split at c_in (the zero channels of the skip added nothing to the rest).

The outputs are the same up to float summation order (largest difference ~1e-4 on the
regressors, in pixels of a 192 px input). With the input shape fixed per session (as
`fer_hf.inference.BlazeFaceDetector` does) the rewritten full-range model runs a 416x320 pass in
~30% less time at 2 threads on an AVX-512 CPU (bench/detection.py measures the whole detector).
Running it again on a rewritten file changes nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

BLOCK = 16  # AVX-512's NCHWc block; a multiple of AVX2's 8


class _Graph:
    """Name lookups over an ONNX graph whose weights may be fp16 initializers behind a Cast."""

    def __init__(self, model: onnx.ModelProto):
        self.graph = model.graph
        self.inits = {t.name: t for t in self.graph.initializer}
        self.cast_source = {
            n.output[0]: n.input[0]
            for n in self.graph.node
            if n.op_type == "Cast" and n.input[0] in self.inits
        }
        self.producer = {out: n for n in self.graph.node for out in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)

    def value(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.inits[self.cast_source.get(name, name)])

    def set_value(self, name: str, value: np.ndarray) -> None:
        tensor = self.inits[self.cast_source.get(name, name)]
        dtype = numpy_helper.to_array(tensor).dtype
        tensor.CopyFrom(numpy_helper.from_array(value.astype(dtype), tensor.name))

    def new_weight(self, name: str, value: np.ndarray, like: str) -> list[onnx.NodeProto]:
        """An initializer `name` stored as `like`'s is (fp16 behind a Cast, or plain)."""
        dtype = numpy_helper.to_array(self.inits[self.cast_source.get(like, like)]).dtype
        if like not in self.cast_source:
            self.graph.initializer.append(numpy_helper.from_array(value.astype(dtype), name))
            return []
        stored = numpy_helper.from_array(value.astype(dtype), f"{name}_stored")
        self.graph.initializer.append(stored)
        return [helper.make_node("Cast", [stored.name], [name], to=onnx.TensorProto.FLOAT)]

    def only_consumer(self, name: str, op_type: str) -> onnx.NodeProto | None:
        users = self.consumers[name]
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def is_pointwise_conv(self, node: onnx.NodeProto | None) -> bool:
        return (
            node is not None
            and node.op_type == "Conv"
            and len(node.input) == 3
            and self.value(node.input[1]).shape[2:] == (1, 1)
            and _attribute(node, "group", 1) == 1
        )


def _attribute(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    for attribute in node.attribute:
        if attribute.name == name:
            node.attribute.remove(attribute)
            break
    node.attribute.append(helper.make_attribute(name, value))


def _pad_axis(value: np.ndarray, extra: int, axis: int) -> np.ndarray:
    widths = [(0, 0)] * value.ndim
    widths[axis] = (0, extra)
    return np.pad(value, widths)


def widen_bottlenecks(g: _Graph) -> int:
    """Rewrite 1: zero channels for narrow `1x1 -> Relu -> depthwise -> 1x1` bottlenecks."""
    count = 0
    for first in list(g.graph.node):
        if not g.is_pointwise_conv(first):
            continue
        weight = g.value(first.input[1])
        channels = weight.shape[0]
        extra = -channels % BLOCK
        relu = g.only_consumer(first.output[0], "Relu")
        depthwise = relu and g.only_consumer(relu.output[0], "Conv")
        if not extra or depthwise is None or _attribute(depthwise, "group", 1) != channels:
            continue
        last = g.only_consumer(depthwise.output[0], "Conv")
        if len(depthwise.input) != 3 or not g.is_pointwise_conv(last):
            continue
        g.set_value(first.input[1], _pad_axis(weight, extra, 0))
        g.set_value(first.input[2], _pad_axis(g.value(first.input[2]), extra, 0))
        g.set_value(depthwise.input[1], _pad_axis(g.value(depthwise.input[1]), extra, 0))
        g.set_value(depthwise.input[2], _pad_axis(g.value(depthwise.input[2]), extra, 0))
        _set_attribute(depthwise, "group", channels + extra)
        g.set_value(last.input[1], _pad_axis(g.value(last.input[1]), extra, 1))
        count += 1
    return count


def split_padded_skips(g: _Graph) -> tuple[int, dict[int, list[onnx.NodeProto]], set[int]]:
    """Rewrite 2: `Relu(Add(Pad_channels(skip), Conv1x1(y)))` -> Concat of two fused halves.
    Returns the count, the new nodes keyed by the id() of the Relu they replace, and the id()s
    of the nodes they make unused."""
    count, replacements, unused = 0, {}, set()
    for add in list(g.graph.node):
        if add.op_type != "Add":
            continue
        inputs = [g.producer.get(name) for name in add.input]
        pad = next((n for n in inputs if n is not None and n.op_type == "Pad"), None)
        conv = next((n for n in inputs if n is not None and n.op_type == "Conv"), None)
        relu = g.only_consumer(add.output[0], "Relu")
        if pad is None or relu is None or not g.is_pointwise_conv(conv):
            continue
        if pad.input[1] not in g.inits or len(g.consumers[conv.output[0]]) != 1:
            continue
        if _attribute(pad, "mode", b"constant") not in (b"constant", "constant"):
            continue
        if len(pad.input) > 2 and pad.input[2] and float(g.value(pad.input[2])) != 0.0:
            continue
        pads = numpy_helper.to_array(g.inits[pad.input[1]]).tolist()  # NCHW begins, then ends
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 2, 3, 4, 6, 7)):
            continue  # only zero channels appended at the end
        weight, bias = g.value(conv.input[1]), g.value(conv.input[2])
        kept = weight.shape[0] - pads[5]
        if kept % BLOCK or pads[5] % BLOCK:
            continue
        base = conv.output[0]
        options = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        nodes = []
        for part, rows in (("a", slice(0, kept)), ("b", slice(kept, None))):
            nodes += g.new_weight(f"{base}_w{part}", weight[rows], conv.input[1])
            nodes += g.new_weight(f"{base}_b{part}", bias[rows], conv.input[2])
            nodes.append(
                helper.make_node(
                    "Conv",
                    [conv.input[0], f"{base}_w{part}", f"{base}_b{part}"],
                    [f"{base}_{part}"],
                    **options,
                )
            )
        nodes += [
            helper.make_node("Add", [f"{base}_a", pad.input[0]], [f"{base}_sum"]),
            helper.make_node("Relu", [f"{base}_sum"], [f"{base}_relu_a"]),
            helper.make_node("Relu", [f"{base}_b"], [f"{base}_relu_b"]),
            helper.make_node(
                "Concat", [f"{base}_relu_a", f"{base}_relu_b"], [relu.output[0]], axis=1
            ),
        ]
        replacements[id(relu)] = nodes
        unused.update(
            {id(add), id(conv)} | ({id(pad)} if len(g.consumers[pad.output[0]]) == 1 else set())
        )
        count += 1
    return count, replacements, unused


def nchwc_friendly(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Both rewrites, in place on `model` (also returned), with how often each applied."""
    widened = widen_bottlenecks(_Graph(model))
    g = _Graph(model)
    split, replacements, unused = split_padded_skips(g)
    nodes = []
    for node in g.graph.node:
        if id(node) in replacements:
            nodes.extend(replacements[id(node)])
        elif id(node) not in unused:
            nodes.append(node)
    # Stable topological order: a replacement's Cast/Conv may come before its inputs' producers.
    available = {i.name for i in g.graph.input} | {t.name for t in g.graph.initializer} | {""}
    ordered = []
    while nodes:
        ready = [n for n in nodes if all(name in available for name in n.input)]
        if not ready:
            raise ValueError("The rewritten graph has a cycle or a dangling input.")
        ready_ids = {id(n) for n in ready}
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        nodes = [n for n in nodes if id(n) not in ready_ids]
    del g.graph.node[:]
    g.graph.node.extend(ordered)
    used = {name for node in ordered for name in node.input}
    kept = [t for t in g.graph.initializer if t.name in used]
    del g.graph.initializer[:]
    g.graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model, {"widened_bottlenecks": widened, "split_padded_skips": split}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="+", help="ONNX files, rewritten in place")
    args = parser.parse_args()
    report = {}
    for path in args.model:
        model, counts = nchwc_friendly(onnx.load(path))
        onnx.save(model, path)
        report[str(path)] = {**counts, "bytes": path.stat().st_size}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
