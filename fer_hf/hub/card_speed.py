"""The model card's speed, ONNX-parity and ONNX-file sections, from bench JSON and parity.json,
and the number formatting every card section shares.

Reads only the `Release`; never imports torch, the models or the cli.
"""

from __future__ import annotations

import math
from typing import Any

from ..artifacts import ONNX_FILE_NAMES, QUANTIZED_FILE_NAME
from .release import Release


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if finite(value) else "n/a (no examples of this class)"


def count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _speed_row(backend: str, latency: Any, p90: Any, throughput: Any, threads: Any, source: str):
    shown_latency = "-"
    if finite(latency):
        shown_latency = f"{latency:.3f} ms" + (f" (p90 {p90:.3f})" if finite(p90) else "")
    shown_throughput = f"{throughput:,.0f}" if finite(throughput) else "-"
    return (
        backend,
        shown_latency,
        shown_throughput,
        "-" if threads is None else str(threads),
        source,
    )


def _bench_machine(machine: Any) -> str | None:
    """A bench document's `machine` in words, e.g. `Xeon (2 logical cores; avx2), 2025-01-01`."""
    if not isinstance(machine, dict):
        return None
    cores = machine.get("logical_cores") or machine.get("cpu_count")
    details = [f"{cores} logical cores"] if cores else []
    details += [", ".join(machine["isa"])] if machine.get("isa") else []
    text = str(machine.get("cpu") or machine.get("processor"))
    text += f" ({'; '.join(details)})" if details else ""
    return text + (f", {machine['date']}" if machine.get("date") else "")


def speed_context(release: Release) -> dict[str, Any]:
    """Speed rows from bench/models.py (PyTorch, FLOPs), bench/inference.py (every backend) and,
    without the latter, parity.json's ONNX timings."""
    rows, facts, machines = [], [f"Parameters: {count(release.num_parameters)}"], []
    bench = release.model_bench
    if bench:
        facts.append(f"{bench['mflops']:.1f} MFLOPs per image at {bench.get('image_size')} px")
        rows.append(
            _speed_row(
                "PyTorch (eager)",
                bench.get("latency_ms_b1"),
                None,
                bench.get("throughput_b64"),
                bench.get("threads"),
                "`bench/models.py`",
            )
        )
        machines.append(_bench_machine(bench.get("machine")))
    inference = release.inference_bench
    if inference:
        for r in inference["rows"]:
            rows.append(
                _speed_row(
                    r["backend"],
                    r.get("latency_ms_median"),
                    r.get("latency_ms_p90"),
                    r.get("throughput_batch64"),
                    r.get("threads"),
                    "`bench/inference.py`",
                )
            )
        end_to_end = [r for r in inference["end_to_end"] if finite(r.get("frames_per_s"))]
        if end_to_end:
            frame = end_to_end[0].get("frame", "a webcam frame")
            facts.append(
                f"end to end ({frame}: detect, crop, classify): "
                + "; ".join(
                    f"{r['frames_per_s']:.1f} frames/s with {r.get('backend')}, "
                    f"{r.get('threads')} thread(s)"
                    + (f", {r['detector']} detector" if r.get("detector") else "")
                    for r in end_to_end
                )
            )
        machines.append(_bench_machine(inference.get("machine")))
    parity = release.parity or {}
    for name, timing in (parity.get("speed_1_thread") or {}).items():
        if inference or not isinstance(timing, dict):
            continue
        backend = "ONNX int8" if name == parity.get("int8", {}).get("file") else "ONNX fp32"
        rows.append(
            _speed_row(
                f"{backend} (`onnx/{name}`)",
                timing.get("latency_ms_median"),
                timing.get("latency_ms_p90"),
                timing.get("throughput_batch64"),
                1,
                "`fer-hf export` (parity.json)",
            )
        )
    return {
        "speed_rows": rows,
        "speed_facts": facts,
        "speed_machine": "; ".join(dict.fromkeys(m for m in machines if m)) or None,
        "parity_rows": _parity_rows(parity),
    }


def _parity_rows(parity: dict[str, Any]) -> list[tuple[str, str]]:
    """What `fer-hf export` checked: fp32 vs PyTorch, int8 vs fp32 (never local paths)."""
    rows = []
    fp32, int8 = parity.get("fp32") or {}, parity.get("int8") or {}
    for output, diff in (fp32.get("max_abs_diff") or {}).items():
        rows.append((f"fp32 max abs `{output}` difference vs PyTorch", f"{diff:.2e}"))
    if finite(fp32.get("atol")):
        rows.append(("fp32 tolerance", f"{fp32['atol']:.0e}"))
    if int8:
        rows.append(("int8 quantization", f"{int8.get('mode')} ({int8.get('preset')})"))
        if finite(int8.get("top1_agreement_with_fp32")):
            rows.append(("int8 top-1 agreement with fp32", pct(int8["top1_agreement_with_fp32"])))
        if finite(int8.get("accuracy_drop_points")):
            rows.append(("int8 accuracy change", f"{-int8['accuracy_drop_points']:+.2f} points"))
        if int8.get("size_bytes") and int8.get("fp32_size_bytes"):
            rows.append(
                (
                    "file size fp32 -> int8",
                    f"{int8['fp32_size_bytes'] / 1e6:.2f} MB -> {int8['size_bytes'] / 1e6:.2f} MB",
                )
            )
    sample = parity.get("sample") or {}
    if rows and sample.get("num_images"):
        rows.append(("checked on", f"{sample['num_images']} images: {sample.get('source')}"))
    if rows and "passed" in parity:
        rows.append(("all checks passed", "yes" if parity["passed"] else "**no**"))
    return rows


def onnx_context(release: Release) -> dict[str, Any]:
    """The ONNX files, and which one to recommend: the faster at export time, else fp32."""
    files = [p.name for p in release.onnx_files if p.suffix == ".onnx"]
    if not files:
        return {"onnx_files": []}
    fastest = ((release.parity or {}).get("speed_1_thread") or {}).get("fastest_batch1")
    recommended = (
        fastest
        if fastest in files
        else (ONNX_FILE_NAMES["onnx"] if ONNX_FILE_NAMES["onnx"] in files else files[0])
    )
    int8_file = ((release.parity or {}).get("int8") or {}).get("file", QUANTIZED_FILE_NAME)
    return {
        "onnx_files": files,
        "onnx_fastest": fastest if fastest in files else None,
        "onnx_recommended": recommended,
        # `fer-hf predict` reads ONNX_FILE_NAMES[backend].
        "onnx_backend": {ONNX_FILE_NAMES["onnx"]: "onnx", int8_file: "onnx-int8"}.get(recommended),
    }
