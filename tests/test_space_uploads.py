"""The Space's uploads: one byte and pixel limit for files and data: URLs, checked before
decoding, with advice for web users; uploads deleted when the server stops (SIGTERM, SIGINT);
a starting server sweeps the folders of dead runs, never a live one's."""

import base64
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers_space import APP, SPACE_DIR, free_port, write_photos
from PIL import Image

from fer_hf.models import init_model_folder

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402


@pytest.fixture(scope="module")
def fer_space():
    sys.path.insert(0, str(SPACE_DIR))
    try:
        import fer_space
    finally:
        sys.path.remove(str(SPACE_DIR))
    return fer_space


def noise_png(path: Path, megabytes: float) -> Path:
    """A PNG of random pixels (incompressible): about `megabytes` MB, a real, decodable photo."""
    side = int((megabytes * 1024**2 / 3) ** 0.5) + 1
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    return path


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG whose header claims `width` x `height` pixels."""
    import struct
    import zlib

    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))
    return path


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_an_oversized_data_url_is_refused_before_decoding(fer_space, tmp_path):
    big = noise_png(tmp_path / "big.png", 21)
    assert big.stat().st_size > fer_space.MAX_UPLOAD_BYTES
    url = data_url(big)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"^'big\.png' is 2\d\.\d MB, more than the 20 MB"):
            fer_space.read_upload({"path": None, "url": url, "orig_name": "big.png"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024**2  # neither the 21 MB of bytes nor ~60 MB of pixels were made
    # The same photo as a file upload meets the same limit.
    with pytest.raises(ValueError, match=r"'big\.png' is 2\d\.\d MB, more than the 20 MB"):
        fer_space.read_upload({"path": str(big), "orig_name": "big.png"})


def test_pixel_limit_for_data_urls_with_advice_for_web_users(fer_space, tmp_path):
    url = data_url(bomb_png(tmp_path / "bomb.png"))
    with pytest.raises(ValueError) as err:
        fer_space.read_upload({"path": None, "url": url, "orig_name": "bomb.png"})
    message = str(err.value)
    assert message.startswith("'bomb.png' is 100000x100000 = 10,000,000,000 pixels, more than")
    assert "40,000,000 pixels this demo accepts" in message and "Downscale" in message
    # Library and CLI advice mean nothing to a web user, and Pillow's own limit is not quoted.
    assert "max_pixels" not in message and "--max-pixels" not in message
    assert "178,956,970" not in message and "89,478,485" not in message
    with pytest.raises(ValueError, match=r"'x\.png' is not valid base64"):
        fer_space.read_upload(
            {"path": None, "url": "data:image/png;base64,@@@", "orig_name": "x.png"}
        )


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_sweep_removes_dead_runs_only(fer_space, tmp_path):
    live = fer_space.claim_run_dir(tmp_path)  # this process: alive
    assert json.loads((live / "owner.json").read_text())["pid"] == os.getpid()
    dead = fer_space.claim_run_dir(tmp_path)
    (dead / "owner.json").write_text(json.dumps({"pid": _dead_pid(), "started": "1"}))
    reused = fer_space.claim_run_dir(tmp_path)  # our pid, but another start: a reused pid
    (reused / "owner.json").write_text(json.dumps({"pid": os.getpid(), "started": "-1"}))
    orphan = tmp_path / f"{fer_space.RUN_DIR_PREFIX}123-old"  # no owner file, an hour old
    orphan.mkdir()
    os.utime(orphan, (time.time() - 3600,) * 2)
    fresh = tmp_path / f"{fer_space.RUN_DIR_PREFIX}456-new"  # no owner file yet: being created
    fresh.mkdir()
    other = tmp_path / "someone-else"
    other.mkdir()
    removed = fer_space.sweep_run_dirs(tmp_path)
    assert sorted(removed) == sorted([dead, reused, orphan])
    assert live.is_dir() and fresh.is_dir() and other.is_dir()


def start_app(model: Path, base: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "FER_HF_MODELS": f"tiny={model}", "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(base),
           "FER_HF_CACHE": str(base.parent / "onnx"), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    log = open(base.parent / f"app-{port}.log", "w")
    process = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, (base.parent / f"app-{port}.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(url + "config", timeout=5):
                return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise TimeoutError(f"space/app.py did not start on {url}")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_uploads_are_gone_when_the_server_stops_and_dead_runs_are_swept(stop, tmp_path):
    model = init_model_folder("factorized", tmp_path / "tiny", image_size=32)
    base = tmp_path / "uploads"
    # What a SIGKILLed earlier run left behind: its folder, with an upload, and a dead owner.
    stale = base / "fer-hf-run-1-killed"
    (stale / "gradio" / "abc").mkdir(parents=True)
    (stale / "gradio" / "abc" / "holiday.jpg").write_bytes(b"someone's photo")
    (stale / "owner.json").write_text(json.dumps({"pid": _dead_pid(), "started": "1"}))
    photo = write_photos(tmp_path / "photos")["astronaut"]
    process, url = start_app(model, base)
    try:
        assert not stale.exists()  # swept at start
        (run_dir,) = base.glob("fer-hf-run-*")
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        assert client.predict(handle_file(str(photo)), api_name="/predict_json")
        uploads = [p for p in (run_dir / "gradio").rglob("astronaut.png")]
        assert uploads, "the upload should be in this run's folder while the server runs"
        assert (run_dir / "examples" / "astronaut.png").is_file()
    finally:
        process.send_signal(stop)
        code = process.wait(timeout=60)
    assert code == 0
    assert not run_dir.exists()  # uploads, results and examples
    assert photo.is_file()  # the user's own file is untouched
    assert list(base.glob("fer-hf-run-*")) == []
    assert [p for p in base.rglob("*") if not p.is_dir()] == []  # no file left anywhere in it
