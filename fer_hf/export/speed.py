"""Small timing helpers shared by the export's fp32-vs-int8 choice and bench/inference.py.

Sessions come from fer_hf.inference.runtime (the one owner of ONNX Runtime settings), with
worker-thread spinning on: timings measure the CPU at full speed. Must not import fer_hf.data,
training, hub or cli.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def onnx_session(path: str | Path, num_threads: int | None = None):
    """`fer_hf.inference.runtime.onnx_session` with spinning worker threads (export's checks and
    timings have the CPU to themselves)."""
    from ..inference.runtime import onnx_session as runtime_session

    return runtime_session(path, num_threads, spinning=True)


def time_calls(
    fn: Callable[[], object], min_time_s: float = 0.5, min_calls: int = 10, warmup: int = 3
) -> np.ndarray:
    """Seconds per call of `fn` over at least `min_calls` calls and `min_time_s` seconds."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def onnx_speed(
    path: str | Path,
    input_shape: tuple[int, int, int],
    num_threads: int | None = 1,
    batch_sizes: tuple[int, int] = (1, 64),
    min_time_s: float = 0.5,
) -> dict[str, float]:
    """Batch-1 latency (median/p90, ms) and large-batch throughput (images/s) of an ONNX file."""
    session = onnx_session(path, num_threads)
    rng = np.random.default_rng(0)
    result = {}
    for batch in batch_sizes:
        inputs = {"pixel_values": rng.standard_normal((batch, *input_shape), dtype=np.float32)}
        times = time_calls(lambda inputs=inputs: session.run(None, inputs), min_time_s=min_time_s)
        if batch == 1:
            result["latency_ms_median"] = float(np.median(times) * 1e3)
            result["latency_ms_p90"] = float(np.percentile(times, 90) * 1e3)
        else:
            result[f"throughput_batch{batch}"] = float(batch / np.median(times))
    return result
