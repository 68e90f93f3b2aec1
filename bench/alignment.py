"""What face alignment does to accuracy on rolled faces: FER2013 validation faces rolled by 0-45
degrees, classified with and without alignment, on the same detections.

    python bench/alignment.py [--data ../shared/data/fer2013] [--limit 1200] [--output X.json]

Each 48x48 validation face (`val/<class>/*`, FER2013's PublicTest) is upscaled 3x and centred on
a 288x288 canvas of its own edge colour, then the canvas is rolled by each angle (the sign
alternates between images). BlazeFace (its webcam setting: one 192 px pass) detects the face;
the model (the bundled factorized release, ONNX fp32, unless --model) classifies the crop
`FerPredictor` would give it, with `align` off (the detector's box grown by the margin) and on
(the square along the eye line, `Face.upright_box`). Accuracy is over the faces detected at that
angle (both variants see the same ones). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FER2013 = REPO.parent / "shared" / "data" / "fer2013"
ANGLES = (0, 15, 30, 45)


def load_faces(
    data: Path, labels: list[str], limit: int, seed: int
) -> list[tuple[np.ndarray, int]]:
    files = []
    for index, label in enumerate(labels):
        folder = data / "val" / label
        if folder.is_dir():
            files += [(path, index) for path in sorted(folder.iterdir())]
    if not files:
        raise SystemExit(f"No images under {data / 'val'}/<class>; pass --data.")
    order = np.random.default_rng(seed).permutation(len(files))[:limit]
    return [(np.asarray(Image.open(files[i][0]).convert("RGB")), files[i][1]) for i in order]


def canvas_for(face: np.ndarray) -> np.ndarray:
    big = cv2.resize(face, (144, 144), interpolation=cv2.INTER_CUBIC)
    return cv2.copyMakeBorder(big, 72, 72, 72, 72, cv2.BORDER_REPLICATE)  # (288, 288, 3)


def main() -> None:
    from fer_hf.inference import (
        BlazeFaceDetector,
        FerPredictor,
        aligned_crop,
        expand_box,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FER2013)
    parser.add_argument("--model", type=Path, default=REPO / "checkpoints" / "fer2013-factorized")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--limit", type=int, default=1200, help="validation faces (seeded draw)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    predictor = FerPredictor.from_pretrained(args.model, backend=args.backend, detector=None)
    detector = BlazeFaceDetector.for_video()
    label_names = [name if name != "anger" else "angry" for name in predictor.labels]
    label_names = [{"happiness": "happy"}.get(n, n) for n in label_names]
    faces = load_faces(args.data, label_names, args.limit, args.seed)
    start = time.perf_counter()
    results = {}
    for angle in ANGLES:
        plain, aligned, truth, found = [], [], [], 0
        for i, (face, label) in enumerate(faces):
            signed = angle if i % 2 == 0 else -angle
            canvas = canvas_for(face)
            matrix = cv2.getRotationMatrix2D((144, 144), signed, 1.0)
            image = cv2.warpAffine(canvas, matrix, (288, 288), borderMode=cv2.BORDER_REPLICATE)
            detections = detector.detect_faces(image)
            if not detections:
                continue
            found += 1
            best = detections[0]  # the largest face
            x, y, w, h = expand_box(best.box, predictor.margin, 288, 288)
            plain.append(image[y : y + h, x : x + w])
            aligned.append(
                aligned_crop(image, best.upright_box, best.roll_degrees, predictor.margin)
            )
            truth.append(label)
        truth = np.asarray(truth)
        row = {"faces": len(faces), "detected": found}
        for name, crops in (("no_align", plain), ("align", aligned)):
            predicted = [predictor.labels.index(r["label"]) for r in predictor.classify(crops)]
            row[f"accuracy_{name}"] = round(float(np.mean(np.asarray(predicted) == truth)), 4)
        results[f"roll_{angle}"] = row
        print(f"roll +-{angle}: {row}", flush=True)
    report = {
        "bench": "alignment",
        "model": str(args.model),
        "backend": args.backend,
        "data": f"{args.data}/val ({len(faces)} faces, seed {args.seed})",
        "detector": repr(detector),
        "by_roll_degrees": results,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
