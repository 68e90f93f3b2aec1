"""Generated raw datasets for the data-layer tests: AffectNet (both releases), FER2013, class trees.

Images are drawn with numpy/PIL; a "coordinate" image stores x in red and y in green, so a crop
can be checked pixel-exactly.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
    "valence,arousal"
)
LANDMARKS = ";".join(f"{v}.5" for v in range(136))  # 68 x,y pairs


def coordinate_image(width: int, height: int) -> Image.Image:
    """RGB image whose pixel (x, y) is (x, y, 128)."""
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    array = np.stack([xs, ys, np.full_like(xs, 128)], axis=-1).astype(np.uint8)
    return Image.fromarray(array)


def face(size: int = 32, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A small random-noise image (stands in for a face)."""
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))


def write_truncated_jpeg(path: Path) -> None:
    buffer = path.with_suffix(".full")
    face(64, seed=99).save(buffer, format="JPEG")
    data = buffer.read_bytes()
    buffer.unlink()
    path.write_bytes(data[: len(data) // 2])


def write_affectnet_original(root: Path, header: bool = True) -> dict:
    """An original-release AffectNet folder with planted bad rows; returns what to expect.

    training.csv: 8 good rows (one per code 0-7, two with code 0), excluded codes 8-10, and bad
    rows; validation.csv: 3 good rows and one bad one.
    """
    images = root / "Manually_Annotated_Images"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    (images / "1").mkdir(parents=True)
    (images / "2").mkdir(parents=True)
    coordinate_image(100, 80).save(images / "1" / "coords.png")
    for i in range(13):
        face(60, seed=i).save(images / "2" / f"f{i}.jpg", quality=95)
    (images / "2" / "empty.jpg").write_bytes(b"")
    (images / "2" / "notimage.jpg").write_text("this is text, not a JPEG")
    write_truncated_jpeg(images / "2" / "truncated.jpg")

    def row(path, box=(5, 5, 40, 40), code=0, valence="0.5", arousal="-0.25", landmarks=True):
        fields = [path, *map(str, box), LANDMARKS if landmarks else "", str(code), valence, arousal]
        return ",".join(fields)

    train = [
        row("1/coords.png", box=(20, 10, 40, 30), code=1, valence="0.75", arousal="0.125"),
        row("2/f0.jpg", code=0),
        row("2/f1.jpg", code=0),
        row("2/f2.jpg", code=2),
        row("2/f3.jpg", code=3),
        row("2/f4.jpg", code=4),
        row("2/f5.jpg", code=5),
        row("2/f6.jpg", code=6),
        row("2/f7.jpg", code=7, valence="-0.5", arousal="0.5"),
        row("2/f8.jpg", code=8, valence="-2", arousal="-2"),
        row("2/f8.jpg", code=9, valence="-2", arousal="-2"),
        row("2/f8.jpg", code=10, valence="-2", arousal="-2"),
        row("2/missing.jpg", code=1),  # bad: image missing
        row("2/empty.jpg", code=1),  # bad: zero bytes
        row("2/notimage.jpg", code=1),  # bad: not an image
        row("2/truncated.jpg", code=1),  # bad: truncated
        row("2/f9.jpg", box=(500, 500, 20, 20), code=1),  # bad: box outside
        row("2/f9.jpg", code=1, valence="-2"),  # bad: -2 valence on an expression row
        row("2/f9.jpg", code=1, arousal="nan"),  # bad: NaN arousal
        row("2/f9.jpg", code=12),  # bad: unknown code
        "2/f9.jpg,1,2,3",  # bad: wrong field count
    ]
    validation = [
        row("2/f10.jpg", code=1),
        row("2/f11.jpg", code=7),
        row("2/f12.jpg", box=(50, 50, 30, 30), code=3),  # crop clamped to the 60x60 image
        row("2/f9.jpg", code="happy"),  # bad: non-numeric code
    ]
    for name, rows in (("training.csv", train), ("validation.csv", validation)):
        lines = ([AFFECTNET_HEADER] if header else []) + rows
        (lists / name).write_text("\n".join(lines) + "\n")
    first_data_row = 2 if header else 1
    return {
        "train_good": 9,
        "test_good": 3,
        "excluded": {"none": 1, "uncertain": 1, "no-face": 1},
        "train_bad_rows": [first_data_row + i for i in range(12, 21)],
        "test_bad_rows": [first_data_row + 3],
    }


def write_affectnet_npy(root: Path) -> dict:
    """A later-release AffectNet folder (npy string annotations) with planted bad records."""
    expected = {"train": {}, "test": {}}
    for set_dir, split, codes in (
        ("train_set", "train", [0, 1, 2, 3, 4, 5, 6, 7, 1, 1]),
        ("val_set", "test", [3, 4, 7]),
    ):
        images, annotations = root / set_dir / "images", root / set_dir / "annotations"
        images.mkdir(parents=True)
        annotations.mkdir(parents=True)
        for i, code in enumerate(codes):
            image_id = f"{100 + i}" if split == "train" else f"{900 + i}"
            face(40, seed=i).save(images / f"{image_id}.jpg", quality=95)
            valence, arousal = f"{-0.176846 + i / 100:.6f}", f"{0.5 - i / 50:.6f}"
            for kind, value in (("exp", str(code)), ("val", valence), ("aro", arousal)):
                np.save(annotations / f"{image_id}_{kind}.npy", np.array(value))
            np.save(annotations / f"{image_id}_lnd.npy", np.array(LANDMARKS))
            expected[split][f"{set_dir}/images/{image_id}.jpg"] = (
                code,
                float(valence),
                float(arousal),
            )
    train_images, train_annotations = (
        root / "train_set" / "images",
        root / "train_set" / "annotations",
    )
    # Planted bad records in train_set.
    face(40, seed=50).save(train_images / "200.jpg")  # no annotations at all
    face(40, seed=51).save(train_images / "201.jpg")
    np.save(train_annotations / "201_exp.npy", np.array("9"))  # excluded (uncertain)
    np.save(train_annotations / "201_val.npy", np.array("-2"))
    np.save(train_annotations / "201_aro.npy", np.array("-2"))
    face(40, seed=52).save(train_images / "202.jpg")
    np.save(train_annotations / "202_exp.npy", np.array("2"))
    np.save(train_annotations / "202_val.npy", np.array("-2"))  # bad: -2 on an expression
    np.save(train_annotations / "202_aro.npy", np.array("0.1"))
    np.save(train_annotations / "203_exp.npy", np.array("1"))  # bad: annotation without image
    (train_images / "204.jpg").write_bytes(b"")  # bad: empty image
    np.save(train_annotations / "204_exp.npy", np.array("1"))
    np.save(train_annotations / "204_val.npy", np.array("0.1"))
    np.save(train_annotations / "204_aro.npy", np.array("0.1"))
    (train_images / "notes.txt").write_text("not an image")  # bad: non-image file
    return {
        "expected": expected,
        "excluded": {"uncertain": 1},
        "bad_files": {
            "train_set/images/200.jpg",
            "train_set/images/202.jpg",
            "train_set/annotations/203_exp.npy",
            "train_set/images/204.jpg",
            "train_set/images/notes.txt",
        },
    }


def write_fer2013_csv(path: Path) -> dict:
    """A Kaggle-style fer2013.csv: 14 Training, 4 PublicTest, 3 PrivateTest rows + 4 bad ones."""
    rng = np.random.default_rng(0)

    def pixels(count=2304):
        return " ".join(map(str, rng.integers(0, 256, size=count)))

    rows = ["emotion,pixels,Usage"]
    usages = ["Training"] * 14 + ["PublicTest"] * 4 + ["PrivateTest"] * 3
    for i, usage in enumerate(usages):
        rows.append(f"{i % 7},{pixels()},{usage}")
    rows.append(f"3,{pixels(2000)},Training")  # bad: row 23, wrong pixel count
    rows.append(f"3,{pixels(2303)} x,Training")  # bad: row 24, non-numeric pixel
    rows.append(f"7,{pixels()},Training")  # bad: row 25, unknown emotion
    rows.append(f"2,{pixels()},Validation")  # bad: row 26, unknown usage
    path.write_text("\n".join(rows) + "\n")
    return {
        "counts": {"train": 14, "validation": 4, "test": 3},
        "bad_rows": {23: "2000 values", 24: "not all integers", 25: "unknown emotion", 26: "Usage"},
    }


def write_class_tree(root: Path, layout: dict[str, int], size: int = 24, mode: str = "L") -> None:
    """`layout` maps relative class folders (e.g. "train/angry") to image counts."""
    for index, (folder, count) in enumerate(layout.items()):
        target = root / folder
        target.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            face(size, seed=index * 1000 + i, mode=mode).save(target / f"img_{i:03d}.jpg")


def tree_digest(root: Path) -> str:
    """Hash of every path, size, mtime and byte under `root` (to prove it was not modified)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
            if path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()
