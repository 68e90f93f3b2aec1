"""Gradio Space test helpers: launch space/app.py in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "space" / "app.py"
SPACE_DIR = ROOT / "space"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(models: str, workdir: Path, timeout_s: float = 180.0) -> Iterator[str]:
    """Serve the app on `models` (FER_HF_MODELS) with its caches in `workdir`; yields the URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "FER_HF_MODELS": models,
        "FER_HF_CACHE": str(workdir / "onnx-cache"),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_TEMP_DIR": str(workdir / "gradio"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("SPACE_ID", None)
    url = f"http://127.0.0.1:{port}/"
    log_path = workdir / "app.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"space/app.py exited with {proc.returncode}:\n{_tail(log_path)}"
                )
            try:
                with urllib.request.urlopen(url + "config", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"space/app.py did not serve {url} in {timeout_s}s:\n"
                                   f"{_tail(log_path)}")  # fmt: skip
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def write_photos(folder: Path) -> dict[str, Path]:
    """Astronaut (one face), the astronaut twice (two faces), a faceless image, broken files."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    astronaut = data.astronaut()
    photos = {
        "astronaut": astronaut,
        "two_faces": np.concatenate([astronaut, astronaut[:, ::-1]], axis=1),
        "no_face": np.full((240, 320, 3), 180, np.uint8),
        # 48 MP of one colour: a tiny PNG that decodes to more than the Space's 40 MP limit.
        "huge": np.zeros((6000, 8000), np.uint8),
    }
    paths = {}
    for name, array in photos.items():
        paths[name] = folder / f"{name}.png"
        Image.fromarray(array).save(paths[name])
    paths["corrupt"] = folder / "corrupt.jpg"
    jpeg = (folder / "astronaut.png").read_bytes()
    paths["corrupt"].write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + jpeg[200:400])
    paths["text"] = folder / "notes.png"
    paths["text"].write_text("these are not pixels\n")
    return paths
