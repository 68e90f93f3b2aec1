"""Load-test the Gradio Space: N concurrent clients x M `predict_json` calls.

    .venv/bin/python bench/space_load.py                        # the bundled default checkpoint
    .venv/bin/python bench/space_load.py --untrained factorized # no checkpoint: a `fer-hf init`
    .venv/bin/python bench/space_load.py --backend onnx-int8 --clients 16 --requests 20
    .venv/bin/python bench/space_load.py --requests 3           # the issue's 16 clients x 3 rounds
    .venv/bin/python bench/space_load.py --client gradio        # clients on gradio_client

Starts space/app.py on a free loopback port (offline, its own Gradio and ONNX caches), warms
the model up with one call, connects every client, then every client sends the astronaut photo
(scikit-image) M times. Prints one JSON document: latency p50/p95/mean/max in ms, throughput,
failures (must be 0; the exit status is 1 otherwise), the CPU time the server and the clients
spent per request, and the machine. Latency includes queueing behind the other clients. The app
serves with its defaults (BlazeFace, FER_HF_CONCURRENCY parallel workers, a bounded queue);
`targets` checks 0 failures and p95 <= 1.5 s.

The clients run on the same machine as the server and take CPU from it. `--client http` (the
default) speaks Gradio's documented HTTP API (upload, `/call/predict_json`, its event stream)
with httpx, as load-testing tools do: ~8 ms of client CPU per call. `--client gradio` uses
`gradio_client`, which costs ~100 ms of CPU per call in this process (its own threads, job
polling): on a 2-core machine that load generator, not the server, is then most of the work.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
TARGET_P95_MS = 1500.0
APP = REPO / "space" / "app.py"


def start_app(models: str, workdir: Path, concurrency: int) -> tuple[subprocess.Popen, str]:
    """space/app.py serving `models` on a free loopback port; returns the process and its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "FER_HF_MODELS": models,
        "FER_HF_CACHE": str(workdir / "onnx-cache"),
        "FER_HF_CONCURRENCY": str(concurrency),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_TEMP_DIR": str(workdir / "gradio"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("SPACE_ID", None)
    log_path = workdir / "app.log"
    with open(log_path, "w") as log:  # the child keeps its own handle
        proc = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "config", timeout=5):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
    sys.exit(f"space/app.py did not start (exit status {proc.poll()}):\n{tail}")


def machine() -> dict:
    """Called after the load test: cpu_summary imports torch, which the client never needs."""
    from fer_hf.artifacts import machine_info
    from fer_hf.training.precision import cpu_summary

    return machine_info(cpu_summary())


class HttpClient:
    """A `predict_json` caller on Gradio's HTTP API: upload the file, start the call, read the
    event stream until its `complete` (or `error`) event. One keep-alive connection."""

    def __init__(self, url: str):
        import httpx

        self.api = url.rstrip("/") + "/gradio_api"
        self.http = httpx.Client(timeout=300)
        self.http.get(url + "config").raise_for_status()  # what a browser loads first

    def predict(self, photo: str, model: str, backend: str):
        with open(photo, "rb") as handle:
            upload = self.http.post(self.api + "/upload", files={"files": handle})
        upload.raise_for_status()
        path = upload.json()[0]
        file_data = {"path": path, "meta": {"_type": "gradio.FileData"}}
        call = self.http.post(
            self.api + "/call/predict_json", json={"data": [file_data, model, backend]}
        )
        call.raise_for_status()
        event, kind = call.json()["event_id"], None
        with self.http.stream("GET", f"{self.api}/call/predict_json/{event}") as stream:
            stream.raise_for_status()
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.removeprefix("event:").strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    data = json.loads(line.removeprefix("data:"))
                    if kind == "error":
                        raise RuntimeError(f"the app answered with an error: {data}")
                    return data[0]
        raise RuntimeError(f"the event stream of call {event} ended without a result")


class GradioClient:
    """The same call through `gradio_client` (what the Space's "Use via API" page shows)."""

    def __init__(self, url: str):
        from gradio_client import Client

        self.client = Client(url, verbose=False)

    def predict(self, photo: str, model: str, backend: str):
        from gradio_client import handle_file

        return self.client.predict(handle_file(photo), model, backend, api_name="/predict_json")


CLIENTS = {"http": HttpClient, "gradio": GradioClient}


def run_client(
    url, photo, backend, requests, latencies, errors, progress=None, kind="http", ready=None
) -> None:
    """One client: connects, waits at `ready` (a barrier shared by all clients, so connecting
    is not timed), then makes `requests` sequential calls; latencies (ms) and errors are
    appended."""
    try:
        client = CLIENTS[kind](url)
    except Exception as err:  # a client that cannot connect fails all its requests
        errors.extend([f"connect: {err}"] * requests)
        client = None
    if ready is not None:
        ready.wait()
    if client is None:
        return
    for _ in range(requests):
        start = time.perf_counter()
        try:
            faces = client.predict(photo, "bench", backend)
            if not faces:
                raise ValueError("no face found in the astronaut photo")
            latencies.append(1000 * (time.perf_counter() - start))
        except Exception as err:  # counted and reported: one failure must not stop the bench
            errors.append(f"{type(err).__name__}: {err}")
        if progress is not None:
            progress.update(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=str(REPO / "checkpoints" / "fer2013-factorized"),
        help="model folder or Hub id (default: checkpoints/fer2013-factorized)",
    )
    parser.add_argument(
        "--untrained",
        choices=["baseline", "vit", "factorized"],
        default=None,
        help="bench an untrained `fer-hf init` model of this kind instead",
    )
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default="torch")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--requests", type=int, default=20, help="calls per client (default 20)")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="the app's FER_HF_CONCURRENCY (default 2)"
    )
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="http",
        help="http: Gradio's HTTP API with httpx (default, ~8 ms of CPU per call); gradio: "
        "gradio_client (~100 ms of CPU per call, taken from the server's cores)",
    )
    parser.add_argument("--output", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1:
        parser.error(f"--clients and --requests must be >= 1, got {args.clients}, {args.requests}")

    from PIL import Image
    from skimage import data

    with tempfile.TemporaryDirectory(prefix="fer-hf-space-load-") as tmp:
        workdir = Path(tmp)
        model = args.model
        if args.untrained:
            from fer_hf.models import init_model_folder

            model = str(init_model_folder(args.untrained, workdir / "model"))
        elif not Path(model).is_dir() and model.count("/") != 1:
            parser.error(f"--model {model!r} does not exist; train it or pass --untrained KIND")
        photo = str(workdir / "astronaut.png")
        Image.fromarray(data.astronaut()).save(photo)
        proc, url = start_app(f"bench={model}", workdir, args.concurrency)
        try:
            latencies, errors = [], []
            # The warm-up call loads (and exports) the model.
            run_client(url, photo, args.backend, 1, [], errors, kind=args.client)
            if errors:
                sys.exit(f"The warm-up call failed: {errors[0]}")
            total = args.clients * args.requests
            server = psutil.Process(proc.pid)
            marks = {}

            def mark_start() -> None:  # runs once, when every client has connected
                marks["cpu"] = (sum(server.cpu_times()[:2]), time.process_time())
                marks["wall"] = time.perf_counter()

            ready = threading.Barrier(args.clients, action=mark_start)
            with tqdm(total=total, desc="space_load", unit="req") as progress:
                threads = [
                    threading.Thread(
                        target=run_client,
                        args=(url, photo, args.backend, args.requests, latencies, errors),
                        kwargs={"progress": progress, "kind": args.client, "ready": ready},
                    )
                    for _ in range(args.clients)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                wall = time.perf_counter() - marks["wall"]
                server_cpu = sum(server.cpu_times()[:2]) - marks["cpu"][0]
                client_cpu = time.process_time() - marks["cpu"][1]
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    values = np.asarray(latencies) if latencies else np.asarray([np.nan])
    report = {
        "bench": "space_load",
        "model": f"untrained {args.untrained}" if args.untrained else args.model,
        "backend": args.backend,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "requests": total,
        "succeeded": len(latencies),
        "failures": len(errors),
        "failure_examples": sorted(set(errors))[:5],
        "client": args.client,
        "app_concurrency": args.concurrency,
        "latency_ms": {
            "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)),
            "mean": float(values.mean()),
            "max": float(values.max()),
        },
        "throughput_rps": len(latencies) / wall,
        # CPU seconds over the timed phase / requests: the app's process, the clients' process.
        "cpu_ms_per_request": {
            "server": 1000 * server_cpu / total,
            "clients": 1000 * client_cpu / total,
        },
        "targets": {
            "failures": {"value": len(errors), "target": "0", "met": not errors},
            "p95_ms": {
                "value": float(np.percentile(values, 95)),
                "target": f"<= {TARGET_P95_MS:.0f}",
                "met": bool(float(np.percentile(values, 95)) <= TARGET_P95_MS),
            },
        },
        "wall_s": wall,
        "machine": machine(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
