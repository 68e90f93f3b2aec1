"""Face detector benchmark on scenes it generates itself: recall per scene type, false positives
per image, ms per 640x480 image, for every detector fer-hf offers.

    python bench/detection.py [--threads 2] [--seed 0] [--output bench/results/detection.json]

Faces come from photos that ship with packages the project already uses: scikit-image's
`astronaut` and matplotlib's `grace_hopper.jpg` (their face boxes annotated by hand below).
Each face is cut out with a feathered ellipse around its head, scaled, optionally rolled,
flipped, recoloured, and pasted onto 640x480 backgrounds cut from scikit-image's face-free
photos and textures (the no-face scenes are such backgrounds alone, the cat included). Scene
types: `upright` (1-3 faces, 80-220 px, roll within +-10 degrees), `roll_20_40` (|roll| 20-40),
`small_30_60` (2-6 faces of 30-60 px), `group` (8-30 faces of 30-70 px in rows, one scene with 30)
and `photo` (the source photos themselves, rescaled/cropped to 640x480). A detection matches a
face when their IoU is >= 0.3 (one-to-one, greedy by IoU); an unmatched detection on any scene
is a false positive. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

WIDTH, HEIGHT = 640, 480
# Hand-annotated face boxes (x, y, w, h): brows to chin, cheek to cheek.
FACE_SOURCES = {"astronaut": (176, 68, 100, 106), "grace_hopper": (160, 128, 204, 204)}
NO_FACE_SOURCES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "brick", "grass",
                   "gravel", "horse", "page", "coins", "clock", "moon", "cell",
                   "immunohistochemistry", "colorwheel", "retina", "text")  # fmt: skip
SCENE_COUNTS = {"upright": 40, "roll_20_40": 40, "small_30_60": 40, "group": 20, "photo": 12}
NO_FACE_COUNT = 60
MATCH_IOU = 0.3


def load_sources() -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    from skimage import data

    matplotlib_data = Path(__import__("matplotlib").get_data_path()) / "sample_data"
    faces = {
        "astronaut": data.astronaut(),
        "grace_hopper": np.asarray(Image.open(matplotlib_data / "grace_hopper.jpg").convert("RGB")),
    }
    backgrounds = []
    for name in NO_FACE_SOURCES:
        image = getattr(data, name)()
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        backgrounds.append(np.ascontiguousarray(image[:, :, :3]).astype(np.uint8))
    return faces, backgrounds


def background(rng: np.random.Generator, backgrounds: list[np.ndarray]) -> np.ndarray:
    """A 640x480 crop of a random face-free photo, rescaled, maybe mirrored."""
    source = backgrounds[rng.integers(len(backgrounds))]
    h, w = source.shape[:2]
    scale = max(WIDTH / w, HEIGHT / h) * rng.uniform(1.0, 1.6)
    resized = cv2.resize(source, (math.ceil(w * scale), math.ceil(h * scale)))
    y = rng.integers(0, resized.shape[0] - HEIGHT + 1)
    x = rng.integers(0, resized.shape[1] - WIDTH + 1)
    out = resized[y : y + HEIGHT, x : x + WIDTH]
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def face_patch(rng, photo: np.ndarray, box, side: float, roll: float):
    """The head around `box` scaled so the face is `side` px wide, rolled by `roll` degrees,
    recoloured; returns (RGB patch, alpha in [0, 1], face centre in the patch)."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    scale = side / w
    half = int(math.ceil(side * 1.05))  # the patch: the face plus a head-sized margin
    # Affine: patch pixel -> photo pixel, rotation about the face centre.
    angle = math.radians(roll)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    matrix = np.array([[cos, -sin, cx - cos * half + sin * half],
                       [sin, cos, cy - sin * half - cos * half]], np.float32)  # fmt: skip
    size = 2 * half
    patch = cv2.warpAffine(photo, matrix, (size, size), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_AREA,
                           borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    patch = patch.astype(np.float32)
    if rng.random() < 0.25:
        patch = patch.mean(axis=2, keepdims=True).repeat(3, axis=2)
    patch = np.clip(patch * rng.uniform(0.7, 1.2) + rng.uniform(-25, 25), 0, 255)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = ((xx - half) / (0.95 * half)) ** 2 + ((yy - half) / (1.0 * half)) ** 2
    alpha = np.clip((1.0 - radius) / 0.25, 0.0, 1.0)  # feathered ellipse around the head
    return patch, alpha, half


def paste(canvas: np.ndarray, patch, alpha, centre) -> None:
    size = patch.shape[0]
    x0, y0 = int(round(centre[0])) - size // 2, int(round(centre[1])) - size // 2
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(WIDTH, x0 + size), min(HEIGHT, y0 + size)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    p = patch[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    a = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None]
    region = canvas[cy0:cy1, cx0:cx1].astype(np.float32)
    canvas[cy0:cy1, cx0:cx1] = np.round(region * (1 - a) + p * a).astype(np.uint8)


def compose(rng, faces, backgrounds, sizes, rolls, positions=None):
    """A scene with one face per (size, roll); faces never overlap. Returns (image, boxes)."""
    canvas = background(rng, backgrounds).copy()
    boxes, placed = [], []
    for i, (side, roll) in enumerate(zip(sizes, rolls, strict=True)):
        name = list(faces)[rng.integers(len(faces))]
        patch, alpha, half = face_patch(rng, faces[name], FACE_SOURCES[name], side, roll)
        for _ in range(50):
            if positions is not None:
                centre = positions[i]
            else:
                centre = (rng.uniform(side * 0.6, WIDTH - side * 0.6),
                          rng.uniform(side * 0.6, HEIGHT - side * 0.6))  # fmt: skip
            # Free placement keeps heads apart; a group's rows may touch but boxes never overlap.
            spacing = 0.75 if positions is None else 0.5
            if all(math.dist(centre, c) > (side + s) * spacing for c, s in placed):
                break
        else:
            continue
        paste(canvas, patch, alpha, centre)
        placed.append((centre, side))
        boxes.append((centre[0] - side / 2, centre[1] - side / 2, side, side))
    return canvas, boxes


def make_scenes(seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    faces, backgrounds = load_sources()
    scenes = []
    for kind, count in SCENE_COUNTS.items():
        for index in range(count):
            if kind == "upright":
                n = int(rng.integers(1, 4))
                image, boxes = compose(rng, faces, backgrounds, rng.uniform(80, 220, n),
                                       rng.uniform(-10, 10, n))  # fmt: skip
            elif kind == "roll_20_40":
                n = int(rng.integers(1, 3))
                rolls = rng.uniform(20, 40, n) * rng.choice([-1, 1], n)
                image, boxes = compose(rng, faces, backgrounds, rng.uniform(80, 200, n), rolls)
            elif kind == "small_30_60":
                n = int(rng.integers(2, 7))
                image, boxes = compose(rng, faces, backgrounds, rng.uniform(30, 60, n),
                                       rng.uniform(-10, 10, n))  # fmt: skip
            elif kind == "group":
                n = 30 if index == 0 else int(rng.integers(8, 31))
                image, boxes = _group(rng, faces, backgrounds, n)
            else:
                image, boxes = _photo(rng, faces, index)
            scenes.append({"kind": kind, "image": image, "boxes": boxes})
    for _ in range(NO_FACE_COUNT):
        scenes.append({"kind": "no_face", "image": background(rng, backgrounds), "boxes": []})
    return scenes


def _group(rng, faces, backgrounds, n):
    """Rows of faces, as in a group photo: 6 per row at most 30 faces in 5 rows."""
    columns = min(n, 6 if n > 12 else 4)
    rows = math.ceil(n / columns)
    cell_w, cell_h = WIDTH / columns, HEIGHT / rows
    side = min(cell_w, cell_h) * 0.62
    sizes = np.clip(rng.normal(side, side * 0.08, n), 30, 70)
    positions = []
    for i in range(n):
        r, c = divmod(i, columns)
        positions.append(((c + 0.5) * cell_w + rng.uniform(-0.08, 0.08) * cell_w,
                          (r + 0.5) * cell_h + rng.uniform(-0.08, 0.08) * cell_h))  # fmt: skip
    return compose(rng, faces, backgrounds, sizes, rng.uniform(-10, 10, n), positions)


def _photo(rng, faces, index):
    """A source photo itself, scaled and cropped to 640x480 at a random face size."""
    name = list(faces)[index % len(faces)]
    photo, (x, y, w, h) = faces[name], FACE_SOURCES[name]
    scale = rng.uniform(0.6, 2.0)
    resized = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((HEIGHT, WIDTH, 3), 127, np.uint8)
    cx, cy = (x + w / 2) * scale, (y + h / 2) * scale  # face centre in the resized photo
    ox = int(rng.uniform(0.3, 0.7) * WIDTH - cx)  # offset of the photo on the canvas
    oy = int(rng.uniform(0.3, 0.6) * HEIGHT - cy)
    sx0, sy0 = max(0, -ox), max(0, -oy)
    sx1, sy1 = min(resized.shape[1], WIDTH - ox), min(resized.shape[0], HEIGHT - oy)
    canvas[sy0 + oy : sy1 + oy, sx0 + ox : sx1 + ox] = resized[sy0:sy1, sx0:sx1]
    return canvas, [(x * scale + ox, y * scale + oy, w * scale, h * scale)]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union > 0 else 0.0


def match(truth, found) -> tuple[int, int]:
    """(matched faces, unmatched detections): greedy one-to-one matching by IoU >= MATCH_IOU."""
    pairs = sorted(((_iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)),
                   reverse=True)  # fmt: skip
    used_t, used_f = set(), set()
    for iou, i, j in pairs:
        if iou < MATCH_IOU:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    return len(used_t), len(found) - len(used_f)


def evaluate(detector, scenes, repeats: int = 3) -> dict:
    """Recall per scene kind, false positives, and ms per 640x480 image (every scene is one):
    each scene is timed `repeats` times after one untimed call, its median kept. Besides wall
    time, the calling thread's CPU time: with --threads 1 (ONNX Runtime and OpenCV then work in
    the calling thread) it is the time one core of its own takes, even on a busy machine."""
    per_kind: dict[str, dict[str, float]] = {}
    times, cpu_times = [], []
    for scene in scenes:
        found = detector.detect(scene["image"])
        runs, cpu_runs = [], []
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.thread_time()
            detector.detect(scene["image"])
            runs.append(time.perf_counter() - start)
            cpu_runs.append(time.thread_time() - cpu_start)
        times.append(float(np.median(runs)))
        cpu_times.append(float(np.median(cpu_runs)))
        hits, false = match(scene["boxes"], found)
        stats = per_kind.setdefault(scene["kind"], {"faces": 0, "found": 0, "fp": 0, "images": 0})
        stats["faces"] += len(scene["boxes"])
        stats["found"] += hits
        stats["fp"] += false
        stats["images"] += 1
    face_kinds = [k for k in per_kind if k != "no_face"]
    total_faces = sum(per_kind[k]["faces"] for k in face_kinds)
    return {
        "recall": round(sum(per_kind[k]["found"] for k in face_kinds) / total_faces, 4),
        "recall_by_scene": {
            k: round(per_kind[k]["found"] / per_kind[k]["faces"], 4) for k in face_kinds
        },
        "false_positives_per_image_no_face": round(
            per_kind["no_face"]["fp"] / per_kind["no_face"]["images"], 4
        ),
        "false_positives_per_image_face_scenes": round(
            sum(per_kind[k]["fp"] for k in face_kinds)
            / sum(per_kind[k]["images"] for k in face_kinds),
            4,
        ),
        "faces": total_faces,
        "images": len(scenes),
        "ms_per_640x480_image": {
            "mean": round(1000 * float(np.mean(times)), 2),
            "median": round(1000 * float(np.median(times)), 2),
            "p90": round(1000 * float(np.percentile(times, 90)), 2),
        },
        "calling_thread_cpu_ms_per_640x480_image": {
            "mean": round(1000 * float(np.mean(cpu_times)), 2),
            "median": round(1000 * float(np.median(cpu_times)), 2),
        },
    }


TARGETS = {"recall": 0.95, "recall_roll_20_40": 0.85, "false_positives": 0.05, "ms": 15.0}


def targets(result: dict) -> dict:
    """The issue's targets, checked for the default detector."""
    values = {
        "recall": (result["recall"], ">=", TARGETS["recall"]),
        "recall_roll_20_40": (
            result["recall_by_scene"]["roll_20_40"],
            ">=",
            TARGETS["recall_roll_20_40"],
        ),
        "false_positives_per_image_no_face": (
            result["false_positives_per_image_no_face"],
            "<=",
            TARGETS["false_positives"],
        ),
        "ms_per_640x480_image_mean": (result["ms_per_640x480_image"]["mean"], "<=", TARGETS["ms"]),
    }
    summary = {
        name: {
            "value": value,
            "target": f"{op} {target}",
            "met": value >= target if op == ">=" else value <= target,
        }
        for name, (value, op, target) in values.items()
    }
    summary["all_met"] = all(v["met"] for v in summary.values())
    return summary


def detectors(threads: int) -> dict:
    """The `--detector` choices of `fer-hf predict`, built as FerPredictor builds them."""
    from fer_hf.inference import BlazeFaceDetector, HaarCascadeDetector

    return {
        "blazeface": BlazeFaceDetector(num_threads=threads),  # the default
        "blazeface-video": BlazeFaceDetector.for_video(num_threads=threads),
        "haar": HaarCascadeDetector(),
        "haar-video": HaarCascadeDetector.for_video(),
    }


def machine(threads: int) -> dict:
    """Called after the timings: cpu_summary imports torch, which the detectors never use."""
    import onnxruntime

    from fer_hf.artifacts import machine_info
    from fer_hf.training.precision import cpu_summary

    return machine_info(
        cpu_summary(),
        threads=threads,
        onnxruntime=onnxruntime.__version__,
        opencv=cv2.__version__,
        date=time.strftime("%Y-%m-%d %H:%M"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime and OpenCV threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", default=None, help="detectors to run (default: all)")
    parser.add_argument("--output", default=None, help="also write the JSON here")
    parser.add_argument("--save-scenes", default=None, help="write the scenes as PNG here")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    scenes = make_scenes(args.seed)
    if args.save_scenes:
        folder = Path(args.save_scenes)
        folder.mkdir(parents=True, exist_ok=True)
        for i, scene in enumerate(scenes):
            Image.fromarray(scene["image"]).save(folder / f"{i:03d}_{scene['kind']}.png")
    results = {}
    for name, detector in detectors(args.threads).items():
        if args.only and name not in args.only:
            continue
        results[name] = evaluate(detector, scenes)
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    report = {
        "bench": "detection",
        "machine": machine(args.threads),
        "seed": args.seed,
        "scenes": {k: sum(s["kind"] == k for s in scenes) for k in [*SCENE_COUNTS, "no_face"]},
        "faces": sum(len(s["boxes"]) for s in scenes),
        "match": f"IoU >= {MATCH_IOU}, one-to-one",
        "detectors": results,
    }
    if "blazeface" in results:
        report["targets_default_detector"] = targets(results["blazeface"])
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
