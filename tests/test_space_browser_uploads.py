"""The Space's photo and webcam widgets in Chromium: replacing a photo raises no spurious
"Waiting for file(s)" warnings, examples and clearing still work, the webcam is not mirrored.

Needs /usr/bin/chromium (`apt-get install chromium`; never `playwright install`).
"""

from pathlib import Path

import pytest
from helpers_space import running_app, write_photos

from fer_hf.models import init_model_folder

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # fmt: skip
WAITING = "Waiting for file(s) to finish uploading"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing; install Debian's Chromium: apt-get install chromium")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    root = tmp_path_factory.mktemp("space-uploads")
    model = init_model_folder("factorized", root / "tiny", image_size=32)
    with running_app(f"tiny={model}", root / "app") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.photos = write_photos(root / "photos")
        page.goto(url, wait_until="load")
        page.wait_for_selector("#run", timeout=60_000)
        yield page
        browser.close()


def status_becomes(page, text: str) -> None:
    page.wait_for_function(
        f"document.querySelector('#status')?.innerText.startsWith({text!r})", timeout=120_000
    )


def test_replacing_the_photo_raises_no_waiting_warning(page):
    upload = page.locator("#photo input[type=file]")
    upload.set_input_files(str(page.photos["two_faces"]))
    status_becomes(page, "2 faces")
    # Dropping a new photo onto the shown one replaces it (as the file input does here).
    for name, expected in (("astronaut", "1 face"), ("two_faces", "2 faces")):
        upload.set_input_files(str(page.photos[name]))
        status_becomes(page, expected)
        page.wait_for_timeout(500)  # a late warning toast would appear by now
        assert page.get_by_text(WAITING).count() == 0


def test_clearing_the_photo_clears_the_result_and_examples_still_run(page):
    page.locator("#photo button[aria-label='Remove Image']").click()
    page.wait_for_function("document.querySelector('#status')?.innerText === ''")
    assert page.locator("#annotated img").count() == 0
    page.get_by_text("Examples").scroll_into_view_if_needed()
    page.locator("button.gallery-item").first.click()  # astronaut.png, already on the server
    status_becomes(page, "1 face")
    assert page.get_by_text(WAITING).count() == 0


def test_webcam_preview_is_not_mirrored(page):
    # The live output shows frames as captured; a mirrored preview beside it would show each
    # face on the opposite side (both or neither must be mirrored).
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_text("Click to Access Webcam").click()
    page.wait_for_selector("#camera video", timeout=60_000)
    transform = page.evaluate("getComputedStyle(document.querySelector('#camera video')).transform")
    assert transform in ("none", "matrix(1, 0, 0, 1, 0, 0)"), transform
