"""tools/blazeface_nchwc.py: the NCHWc rewrites of the BlazeFace graph are exact, and the shipped
full-range model is already rewritten."""

import importlib.util
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

TOOL = Path(__file__).resolve().parents[1] / "tools" / "blazeface_nchwc.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("blazeface_nchwc", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _block_model(fp16_weights: bool) -> onnx.ModelProto:
    """A down-sampling BlazeBlock: x (32 ch) -> 1x1 (8) -> Relu -> depthwise 3x3 -> 1x1 (48),
    plus x padded with 16 zero channels, then Relu; random weights."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.normal(size=(8, 32, 1, 1)),
        "b1": rng.normal(size=8),
        "wd": rng.normal(size=(8, 1, 3, 3)),
        "bd": rng.normal(size=8),
        "w2": rng.normal(size=(48, 8, 1, 1)),
        "b2": rng.normal(size=48),
    }
    inits, nodes = [], []
    for name, value in weights.items():
        if fp16_weights:
            inits.append(numpy_helper.from_array(value.astype(np.float16), f"{name}_fp16"))
            nodes.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT))
        else:
            inits.append(numpy_helper.from_array(value.astype(np.float32), name))
    inits.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 16, 0, 0], np.int64), "pads"))
    nodes += [
        helper.make_node("Conv", ["x", "w1", "b1"], ["r"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["r"], ["rr"]),
        helper.make_node(
            "Conv", ["rr", "wd", "bd"], ["d"], kernel_shape=[3, 3], group=8, pads=[1, 1, 1, 1]
        ),
        helper.make_node("Conv", ["d", "w2", "b2"], ["e"], kernel_shape=[1, 1]),
        helper.make_node("Pad", ["x", "pads"], ["s"]),
        helper.make_node("Add", ["s", "e"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 48, "h", "w"])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("fp16_weights", [False, True])
def test_rewrites_are_exact(tool, fp16_weights):
    x = np.random.default_rng(1).normal(size=(1, 32, 12, 10)).astype(np.float32)
    model = _block_model(fp16_weights)
    expected = _run(model, x)
    rewritten, counts = tool.nchwc_friendly(_block_model(fp16_weights))
    assert counts == {"widened_bottlenecks": 1, "split_padded_skips": 1}
    ops = [node.op_type for node in rewritten.graph.node]
    assert "Pad" not in ops and ops.count("Concat") == 1
    widths = [
        numpy_helper.to_array(t).shape[0]
        for t in rewritten.graph.initializer
        if t.name.startswith("w1")
    ]
    assert widths == [16]  # 8 bottleneck channels padded to the 16-channel block
    np.testing.assert_allclose(_run(rewritten, x), expected, rtol=1e-4, atol=1e-4)
    again, counts = tool.nchwc_friendly(rewritten)  # idempotent
    assert counts == {"widened_bottlenecks": 0, "split_padded_skips": 0}


def test_a_pad_that_is_not_a_channel_pad_is_left_alone(tool):
    model = _block_model(False)
    pads = next(t for t in model.graph.initializer if t.name == "pads")
    pads.CopyFrom(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 16, 1, 0], np.int64), "pads"))
    _, counts = tool.nchwc_friendly(model)
    assert counts["split_padded_skips"] == 0


def test_the_shipped_full_range_model_is_rewritten(tool):
    data = (
        resources.files("fer_hf.inference") / "weights" / "blazeface_full_range.onnx"
    ).read_bytes()
    model = onnx.load_from_string(data)
    assert "Pad" not in [node.op_type for node in model.graph.node]
    _, counts = tool.nchwc_friendly(model)
    assert counts == {"widened_bottlenecks": 0, "split_padded_skips": 0}
