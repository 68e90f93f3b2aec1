"""The Space in a real browser: Debian Chromium driven by Playwright, headless, fake webcam.

Run with `pytest -m browser tests/test_space_browser.py` (needs /usr/bin/chromium: `apt-get install
chromium`; never `playwright install`). Screenshots are written to test-artifacts/; set
FER_HF_TEST_MODEL=DIR to take them with a trained model other than checkpoints/fer2013-factorized.
"""

import os
import time
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pytest
from helpers_space import ROOT, running_app, write_photos

from fer_hf.models import init_model_folder

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]
FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def write_fake_camera(path: Path, frames: int = 20) -> Path:
    """A Y4M clip for Chromium's fake camera: the astronaut's head moving left and right."""
    from skimage import data

    head = cv2.resize(data.astronaut()[0:300, 80:330], (400, 480))
    with open(path, "wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for i in range(frames):
            frame = np.full((480, 640, 3), 90, np.uint8)
            x = round(240 * abs(i % frames - frames / 2) / (frames / 2))
            frame[:, x : x + 400] = head
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app on FER_HF_TEST_MODEL or the trained default checkpoint when present, else an
    untrained `fer-hf init` model (the screenshots then show near-uniform probabilities)."""
    root = tmp_path_factory.mktemp("space-browser")
    model = Path(os.environ.get("FER_HF_TEST_MODEL") or ROOT / "checkpoints" / "fer2013-factorized")
    if not model.is_dir():
        model = init_model_folder("factorized", root / "untrained", valence_arousal=True)
    with running_app(f"{model.name}={model}", root / "app") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing; install Debian's Chromium: apt-get install chromium")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    camera = write_fake_camera(tmp_path_factory.mktemp("camera") / "astronaut.y4m")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS + FAKE_CAMERA_ARGS + [f"--use-file-for-fake-video-capture={camera}"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    """A page on the app; requests leaving the loopback are aborted and recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.outside = []
    app_host = urlparse(app_url).netloc

    def route(route):
        if urlparse(route.request.url).netloc in (app_host, ""):
            route.continue_()
        else:
            page.outside.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    page.goto(app_url, wait_until="load")
    page.wait_for_selector("#run", timeout=60_000)
    yield page
    context.close()


def test_photo_upload_shows_boxes_bars_and_json(page, tmp_path):
    photos = write_photos(tmp_path)
    page.locator("#photo input[type=file]").set_input_files(str(photos["two_faces"]))
    page.wait_for_selector("#annotated img", timeout=120_000)
    page.wait_for_selector("#bars .fer-face[data-face='2']", timeout=120_000)
    assert page.locator("#status").inner_text().startswith("2 faces")
    assert page.locator("#bars .fer-face").count() == 2
    rows, fills = (page.locator(f"#bars .fer-{part}").count() for part in ("row", "fill"))
    assert rows == fills == 14  # 2 faces x 7 FER2013 classes, a bar each
    assert page.locator("#result").inner_text().count('"box"') == 2
    assert page.locator("#responsible-use").inner_text().startswith("Responsible use.")
    page.wait_for_timeout(500)  # let the plot image paint
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "space_photo.png"), full_page=True)
    # Gradio's page template asks cdnjs for iframe-resizer; nothing else may leave the machine.
    assert all("iframe-resizer" in url for url in page.outside), page.outside


def test_photo_without_a_face_shows_a_message(page, tmp_path):
    photos = write_photos(tmp_path)
    page.locator("#photo input[type=file]").set_input_files(str(photos["no_face"]))
    page.wait_for_function(
        "document.querySelector('#status')?.innerText.includes('No face found')", timeout=120_000
    )
    assert page.locator("#annotated img").count() == 1  # the photo is shown, not an empty image


def test_corrupt_upload_shows_an_error_toast(page, tmp_path):
    photos = write_photos(tmp_path)
    page.locator("#photo input[type=file]").set_input_files(str(photos["corrupt"]))
    toast = page.get_by_text("is truncated or corrupt")
    toast.wait_for(timeout=120_000)
    assert "corrupt.jpg" in toast.inner_text()


def test_webcam_stream_shows_a_live_overlay(page):
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_text("Click to Access Webcam").click()
    page.get_by_label("capture photo").click()  # Gradio's "Record" button starts the stream
    page.wait_for_selector("#live-bars .fer-face", timeout=120_000)
    frames, deadline = set(), time.monotonic() + 60
    while len(frames) < 3 and time.monotonic() < deadline:
        frames.add(page.locator("#live img").get_attribute("src"))
        page.wait_for_timeout(300)
    # Gradio names cached images by their content: new names are new overlays.
    assert len(frames) >= 3, frames
    assert page.locator("#live-bars").inner_text().startswith("Face 1: ")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "space_webcam.png"), full_page=True)
