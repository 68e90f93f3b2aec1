"""bench/space_load.py end to end, at a small scale (the real run is 16 clients x 20 requests)."""

import json
import subprocess
import sys

import pytest
from helpers_space import ROOT

pytest.importorskip("skimage")


@pytest.mark.parametrize("client", ["http", "gradio"])
def test_space_load_bench_reports_latency_and_no_failures(client):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "space_load.py"), "--untrained", "factorized",
         "--clients", "3", "--requests", "2", "--client", client],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert (report["requests"], report["succeeded"], report["failures"]) == (6, 6, 0)
    assert report["client"] == client
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    assert report["throughput_rps"] > 0 and report["machine"]["logical_cores"] >= 1
    # Both processes did work in the timed phase: the server ran 6 predictions.
    assert report["cpu_ms_per_request"]["server"] > 0
    assert report["cpu_ms_per_request"]["clients"] > 0
