"""A corpus of bad (and merely unusual) inputs through every entry point a user has.

Each case is generated here (no binary fixtures) and goes through `fer-hf predict` on the file
alone, `fer-hf predict` on a folder holding the whole corpus, `fer-hf evaluate` and
`fer-hf prepare folder` on a class-folder tree holding it, and the Space's `predict_json` API
(gradio_client). Every case asserts its outcome on every path: processed, or skipped with a
message naming the file and the reason; every run completes; no input is modified. One tiny
model and one Space server serve the whole corpus.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fer_hf.cli import main
from fer_hf.models import init_model_folder

skimage_data = pytest.importorskip("skimage.data")

OK = "ok"  # processed
NA = None  # the case cannot exist on this path (e.g. a missing path inside a folder)
PATHS = ("predict", "folder", "evaluate", "prepare", "space")


def _face() -> Image.Image:
    """The astronaut's head (about 210 x 240 px): a face every detector finds."""
    return Image.fromarray(skimage_data.astronaut()[20:260, 120:330])


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85, **kwargs)
    return buffer.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A 70-byte PNG whose header claims `width` x `height` pixels (the data is 8 x 8)."""
    data = bytearray(_png(Image.new("L", (8, 8))))
    ihdr = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def _video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for _ in range(frames):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()


def _exif_rotated(path: Path) -> None:
    # The pixels are stored lying on their side; EXIF orientation 6 says "rotate 90 degrees
    # clockwise to view": only a reader that honours it sees an upright (detectable) face.
    exif = Image.Exif()
    exif[0x0112] = 6
    path.write_bytes(_jpeg(_face().transpose(Image.Transpose.ROTATE_90), exif=exif))


def _thirty_faces(path: Path) -> None:
    tile = _face().resize((100, 114))
    grid = Image.new("RGB", (6 * 120, 5 * 134), (200, 200, 200))
    for row in range(5):
        for col in range(6):
            grid.paste(tile, (10 + col * 120, 10 + row * 134))
    path.write_bytes(_jpeg(grid))


def _animated_gif(path: Path) -> None:
    frames = [_face().resize((105, 120)).convert("P"), Image.new("P", (105, 120), 3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _rgba(path: Path) -> None:
    rgba = _face().convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, np.uint8)
    alpha[:, :30] = 0  # a transparent stripe
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(path)


def _float_tiff(path: Path) -> None:
    values = np.asarray(_face().convert("L"), np.float32) / 255.0  # floats in [0, 1]
    Image.fromarray(values).save(path)  # mode F


def _sixteen_bit(path: Path) -> None:
    values = np.asarray(_face().convert("L"), np.uint16) * 257
    Image.fromarray(values).save(path)  # a 16-bit grayscale PNG (mode I;16)


def _self_loop(path: Path) -> None:
    os.symlink(path.name, path)  # loop.jpg -> loop.jpg


def _dangling(path: Path) -> None:
    os.symlink("gone-forever.jpg", path)


def _good_link(path: Path) -> None:
    target = path.parent / "link-target" / "target.png"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(_png(_face()))
    os.symlink(os.path.join("link-target", "target.png"), path)


@dataclass(frozen=True)
class Case:
    """One corpus entry: `make(path)` writes it; `expect[path]` is OK, NA or a reason regex."""

    name: str  # file name inside the corpus folder / the class folder of the tree
    make: Callable[[Path], None] | None
    expect: dict[str, str | None] = field(default_factory=dict)
    faces: tuple[int, int] | None = None  # (min, max) faces `predict` must find, when processed
    space: str | None = None  # what the Space is sent instead of the file (see test_space)

    def outcome(self, path: str) -> str | None:
        return self.expect.get(path, self.expect.get("*"))


def ok(**kwargs) -> dict:
    return {"*": OK, **kwargs}


def fails(reason: str, **kwargs) -> dict:
    return {"*": reason, **kwargs}


NOT_IMAGE_FILE = r"not an image file \(extension '{}'\)"  # evaluate / prepare on other files
IGNORED = r"not an image or video file \(extension '{}'\)"  # predict on a folder

CASES = [
    Case("zero_byte.jpg", lambda p: p.write_bytes(b""), fails(r"empty file \(0 bytes\)")),
    Case(
        "truncated.jpg",
        lambda p: p.write_bytes(_jpeg(_face())[:1500]),
        fails(r"truncated or corrupt"),
    ),
    Case("png_named.jpg", lambda p: p.write_bytes(_png(_face())), ok(), faces=(1, 1)),
    Case(
        "text.png",
        lambda p: p.write_text("these are not pixels\n"),
        fails(r"not an image", evaluate=r"not an image \(unrecognised format\)"),
    ),
    Case(
        "bomb_100000x100000.png",
        lambda p: p.write_bytes(_bomb_png(100_000, 100_000)),
        fails(r"100000x100000 = 10,000,000,000 pixels, more than the"),
    ),
    Case(
        "huge_10000x9000.png",  # 90 MP: over the 89.5 MP default (and the Space's 40 MP)
        lambda p: Image.new("L", (10_000, 9_000)).save(p),
        fails(r"10000x9000 = 90,000,000 pixels, more than the"),
    ),
    Case(
        "one_pixel.png", lambda p: Image.new("RGB", (1, 1), (9, 9, 9)).save(p), ok(), faces=(0, 0)
    ),
    Case(
        "thin_10x10000.png", lambda p: Image.new("L", (10, 10_000), 99).save(p), ok(), faces=(0, 0)
    ),
    Case("cmyk.jpg", lambda p: p.write_bytes(_jpeg(_face().convert("CMYK"))), ok(), faces=(1, 1)),
    Case("gray16.png", _sixteen_bit, ok(), faces=(1, 1)),
    Case("float32.tiff", _float_tiff, ok(), faces=(1, 1)),
    Case("rgba_transparent.png", _rgba, ok(), faces=(1, 1)),
    Case("palette.gif", lambda p: _face().convert("P").save(p), ok(), faces=(1, 1)),
    Case("animated.gif", _animated_gif, ok(), faces=(1, 1)),  # the first frame is read
    Case("exif_rotated.jpg", _exif_rotated, ok(), faces=(1, 1)),  # sideways without EXIF: 0
    Case(
        "vector.svg",
        lambda p: p.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'),
        fails(
            r"not an image",
            folder=IGNORED.format(r"\.svg"),
            evaluate=NOT_IMAGE_FILE.format(r"\.svg"),
            prepare=NOT_IMAGE_FILE.format(r"\.svg"),
        ),
    ),
    Case(
        "document.pdf",
        lambda p: p.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"),
        fails(
            r"not an image",
            folder=IGNORED.format(r"\.pdf"),
            evaluate=NOT_IMAGE_FILE.format(r"\.pdf"),
            prepare=NOT_IMAGE_FILE.format(r"\.pdf"),
        ),
    ),
    Case(
        "folder_named.jpg",
        lambda p: p.mkdir(),
        fails(
            r"is a folder, not an image file",
            predict=r"folder holds no image or video files",
            space=NA,  # a folder cannot be uploaded
        ),
    ),
    Case("loop.jpg", _self_loop, fails(r"symbolic link loop", space=NA)),
    Case("dangling.jpg", _dangling, fails(r"dangling symbolic link", space=NA)),
    Case("good_link.jpg", _good_link, ok(), faces=(1, 1)),
    Case("visage été 😀 (1).png", lambda p: p.write_bytes(_png(_face())), ok(), faces=(1, 1)),
    Case("UPPER CASE.JPG", lambda p: p.write_bytes(_jpeg(_face())), ok(), faces=(1, 1)),
    Case("tiny.webp", lambda p: _face().resize((52, 60)).save(p), ok(), faces=(0, 1)),
    Case("gray_alpha.png", lambda p: _face().convert("LA").save(p), ok(), faces=(1, 1)),
    Case("bilevel.png", lambda p: _face().convert("1").save(p), ok(), faces=(0, 1)),
    Case(
        "corrupt.mp4",
        lambda p: p.write_bytes(os.urandom(4000)),
        fails(
            r"OpenCV cannot decode the video",
            folder=r"OpenCV cannot decode the video",
            evaluate=NOT_IMAGE_FILE.format(r"\.mp4"),
            prepare=NOT_IMAGE_FILE.format(r"\.mp4"),
            space=r"not an image file",
        ),
    ),
    Case(
        "zero_frames.avi",
        lambda p: _video(p, 0),
        fails(
            r"has no frames \(0 decoded\)",
            evaluate=NOT_IMAGE_FILE.format(r"\.avi"),
            prepare=NOT_IMAGE_FILE.format(r"\.avi"),
            space=r"not an image file",
        ),
    ),
    Case(
        "no_face.png",
        lambda p: Image.new("RGB", (320, 240), (180, 150, 120)).save(p),
        ok(),
        faces=(0, 0),
    ),  # fmt: skip
    Case("thirty_faces.jpg", _thirty_faces, ok(), faces=(25, 30)),
    Case(
        "missing.jpg",  # named on the command line, never created
        None,
        fails(r"no such file or folder", folder=NA, evaluate=NA, prepare=NA, space=NA),
    ),
    Case(
        "oversized_data_url.png",  # a 20.9 MiB photo sent to the API as a data: URL, not a file
        None,
        {"*": NA, "space": r"'oversized_data_url\.png' is 2\d\.\d MB, more than the 20 MB"},
        space="data-url",
    ),
    Case(
        "bomb_data_url.png",  # the 100000 x 100000 header, as a data: URL
        None,
        {"*": NA, "space": r"'bomb_data_url\.png' is 100000x100000 = 10,000,000,000 pixels"},
        space="data-url",
    ),
]
assert len({c.name for c in CASES}) == len(CASES) >= 30


def cases_for(path: str):
    """`parametrize` arguments: the cases that can exist on `path`, named by file."""
    cases = [c for c in CASES if c.outcome(path) is not NA]
    return pytest.mark.parametrize("case", cases, ids=[c.name for c in cases])


def write_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        if case.make is not None:
            case.make(folder / case.name)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry below `folder` (links not followed): kind, size, mtime and content hash."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if path.is_symlink():
                entries[str(path)] = ("link", os.readlink(path), st.st_mtime_ns)
            elif path.is_dir():
                entries[str(path)] = ("dir", st.st_mtime_ns)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[str(path)] = ("file", st.st_size, st.st_mtime_ns, digest)
    return entries


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


@contextlib.contextmanager
def captured_stderr():
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        yield buffer


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return init_model_folder(
        "factorized", tmp_path_factory.mktemp("bad-model") / "m", image_size=32
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad-corpus") / "corpus"
    write_corpus(folder)
    return folder


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A class-folder tree: the corpus in happy/, six good faces in sad/."""
    root = tmp_path_factory.mktemp("bad-tree") / "tree"
    write_corpus(root / "happy")
    (root / "sad").mkdir()
    for i in range(6):
        _face().rotate(3 * i).save(root / "sad" / f"good_{i}.png")
    return root


def case_files(folder: Path, case: Case) -> set[str]:
    """The snapshot keys belonging to `case` (its entry and, for a link, its target)."""
    keys = {str(folder / case.name)}
    if case.name == "good_link.jpg":
        keys |= {str(folder / "link-target"), str(folder / "link-target" / "target.png")}
    return keys


# --- fer-hf predict on each file alone -------------------------------------------------------


@cases_for("predict")
def test_predict_single(case, model, corpus, tmp_path):
    expected = case.outcome("predict")
    path = corpus / case.name
    before = snapshot(corpus)
    out = tmp_path / "results.json"
    with captured_stderr() as err:
        code = main(["predict", str(path), "--model", str(model), "--output", str(out),
                     "--annotate", str(tmp_path / "annotated")])  # fmt: skip
    log = err.getvalue().replace("\r", "\n")  # progress bars redraw with carriage returns
    records = json.loads(out.read_text())  # a complete JSON array, whatever happened
    if expected == OK:
        assert code == 0, log
        (record,) = records
        assert record["file"] == str(path)
        low, high = case.faces
        assert low <= len(record["faces"]) <= high, (len(record["faces"]), log)
        assert "0 failed, 0 ignored" in log
        (annotated,) = (tmp_path / "annotated").iterdir()
        Image.open(annotated).verify()
    else:
        assert code == 1, log
        assert records == []
        assert re.search(rf"^failed {re.escape(str(path))}: .*{expected}", log, re.M), log
        assert "1 failed" in log and "Traceback" not in log
    assert not changed(before, snapshot(corpus)) & case_files(corpus, case)


# --- fer-hf predict on the folder holding the whole corpus -----------------------------------


@pytest.fixture(scope="module")
def folder_run(model, corpus, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("bad-folder-run")
    before = snapshot(corpus)
    with captured_stderr() as err:
        code = main(["predict", str(corpus), "--model", str(model), "--output",
                     str(out_dir / "results.csv"), "--annotate", str(out_dir / "ann")])  # fmt: skip
    import csv

    rows = list(csv.DictReader((out_dir / "results.csv").open()))
    return {
        "code": code,
        "log": err.getvalue().replace("\r", "\n"),
        "rows": rows,
        "changed": changed(before, snapshot(corpus)),
    }


def test_predict_folder_completes_and_counts_everything(folder_run):
    assert folder_run["code"] == 1  # some inputs failed; everything else was written
    log = folder_run["log"]
    assert "Traceback" not in log
    failed = len(re.findall(r"^failed ", log, re.M))
    ignored = len(re.findall(r"^ignored ", log, re.M))
    expected = [c.outcome("folder") for c in CASES if c.outcome("folder") not in (OK, NA)]
    assert failed + ignored == len(expected)
    images = sum(c.outcome("folder") == OK for c in CASES) + 1  # + the good link's target
    summary = log.strip().splitlines()[-1]
    assert summary.startswith(f"{images} images, 0 videos (0 frames), "), summary
    assert f"; {failed} failed, {ignored} ignored; results in " in summary


@cases_for("folder")
def test_predict_folder(case, folder_run, corpus):
    expected = case.outcome("folder")
    path = corpus / case.name
    files = {row["file"] for row in folder_run["rows"]}
    log = folder_run["log"]
    if expected == OK:
        assert str(path) in files
        faces = {row["face"] for row in folder_run["rows"] if row["file"] == str(path)} - {""}
        assert case.faces[0] <= len(faces) <= case.faces[1]
    else:
        assert str(path) not in files
        assert re.search(rf"^(failed|ignored) {re.escape(str(path))}: .*{expected}", log, re.M), log
    assert not folder_run["changed"] & case_files(corpus, case)


# --- fer-hf evaluate and fer-hf prepare folder on a class-folder tree holding the corpus -------


@pytest.fixture(scope="module")
def evaluate_run(model, tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("bad-evaluate") / "eval"
    before = snapshot(tree)
    with captured_stderr() as err:
        code = main(["evaluate", str(model), str(tree), "--output", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    return {"code": code, "log": err.getvalue().replace("\r", "\n"), "metrics": metrics,
            "changed": changed(before, snapshot(tree))}  # fmt: skip


@pytest.fixture(scope="module")
def prepare_run(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("bad-prepare") / "prepared"
    before = snapshot(tree)
    with captured_stderr():
        code = main(["prepare", "folder", "--data-dir", str(tree), "--output", str(out)])
    from fer_hf.data import load_prepared

    splits = load_prepared(out)
    sources = {s for split in splits.values() for s in split["source"]}
    report = json.loads((out / "prepare_report.json").read_text())
    return {"code": code, "report": report, "sources": sources,
            "changed": changed(before, snapshot(tree))}  # fmt: skip


def _tree_outcomes(path: str) -> tuple[int, int]:
    good = sum(c.outcome(path) == OK for c in CASES)
    bad = sum(c.outcome(path) not in (OK, NA) for c in CASES)
    return good, bad


def test_evaluate_completes_and_counts_skipped_files(evaluate_run):
    good, bad = _tree_outcomes("evaluate")
    metrics = evaluate_run["metrics"]
    assert evaluate_run["code"] == 0
    assert metrics["n"] == good + 6 + 1  # + the six sad/ faces + the good link's target
    assert metrics["num_skipped"] == len(metrics["skipped"]) == bad
    assert f"{bad} files skipped" in evaluate_run["log"]


def test_prepare_completes_and_reports_skipped_files(prepare_run):
    good, bad = _tree_outcomes("prepare")
    assert prepare_run["code"] == 0
    assert len(prepare_run["sources"]) == good + 6 + 1
    assert prepare_run["report"]["num_skipped"] == bad


@cases_for("evaluate")
def test_evaluate(case, evaluate_run, tree):
    expected = case.outcome("evaluate")
    skipped = {s["file"]: s["reason"] for s in evaluate_run["metrics"]["skipped"]}
    source = f"happy/{case.name}"
    if expected == OK:
        assert source not in skipped
    else:
        assert re.search(expected, skipped[source]), skipped.get(source)
        assert f"skipped {source}: {skipped[source]}" in evaluate_run["log"]
    assert not evaluate_run["changed"] & case_files(tree / "happy", case)


@cases_for("prepare")
def test_prepare(case, prepare_run, tree):
    expected = case.outcome("prepare")
    skipped = {s["file"]: s["reason"] for s in prepare_run["report"]["skipped"]}
    source = f"happy/{case.name}"
    if expected == OK:
        assert source not in skipped and source in prepare_run["sources"]
    else:
        assert source not in prepare_run["sources"]
        assert re.search(expected, skipped[source]), skipped.get(source)
    assert not prepare_run["changed"] & case_files(tree / "happy", case)


# --- the Space's API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def space(model, tmp_path_factory):
    pytest.importorskip("gradio_client")
    from gradio_client import Client
    from helpers_space import running_app

    root = tmp_path_factory.mktemp("bad-space")
    with running_app(f"tiny={model}", root / "app") as url:
        yield Client(url, verbose=False, download_files=str(root / "downloads"))


def _data_url_payload(case: Case) -> dict:
    if case.name.startswith("oversized"):
        rng = np.random.default_rng(0)  # incompressible: a 21 MB PNG of a real photo size
        data = _png(Image.fromarray(rng.integers(0, 256, (2700, 2700, 3), dtype=np.uint8)))
        assert len(data) > 20 * 1024**2  # the Space accepts up to 20 MB (MiB)
    else:
        data = _bomb_png(100_000, 100_000)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return {"path": None, "url": url, "orig_name": case.name, "meta": {"_type": "gradio.FileData"}}


@cases_for("space")
def test_space(case, space, corpus):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    expected = case.outcome("space")
    before = snapshot(corpus)
    if case.space == "data-url":
        payload = _data_url_payload(case)
    else:
        payload = handle_file(str(corpus / case.name))
    if expected == OK:
        faces = space.predict(payload, api_name="/predict_json")
        low, high = case.faces
        assert low <= len(faces) <= high
    else:
        with pytest.raises(AppError) as err:
            space.predict(payload, api_name="/predict_json")
        message = str(err.value)
        assert re.search(expected, message), message
        assert repr(case.name) in message or case.name in message  # the user's file is named
        assert "Traceback" not in message and "/tmp" not in message  # nor the server's copy
    assert not changed(before, snapshot(corpus)) & case_files(corpus, case)
