"""Benchmark `fer-hf prepare`: throughput, peak memory, extrapolated time for the full AffectNet.

    .venv/bin/python bench/prepare.py                        # synthetic AffectNet + real FER2013
    .venv/bin/python bench/prepare.py --sizes 500 2000 --num-proc 2 --image-size 224

Writes a synthetic original-release AffectNet sample (425x425 JPEGs with face boxes, like the
real images) to a temporary folder, prepares it at several sizes, each run in a fresh process
so its peak RSS is its own (a tiny warm-up run goes first), and prepares the real FER2013 folder
when it exists. The 420,000-image time is extrapolated from the difference between the smallest
and largest run (fixed start-up cost + marginal seconds per image) and, as a conservative upper
bound, from the largest run's end-to-end rate (start-up included). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fer_hf.artifacts import machine_info

REPO = Path(__file__).resolve().parents[1]
AFFECTNET_IMAGES = 420_000
SIDE = 425  # AffectNet's average image side
HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
    "valence,arousal"
)

# Runs in a child process: prepare, then report wall time, peak RSS (`ru_maxrss` of itself and
# of its workers; it includes pages of the memory-mapped Arrow files, which grow with the data and
# are reclaimable page cache) and the sampled peak of anonymous memory (RssAnon, the heap) summed
# over the process tree, which is what must stay flat as the number of images grows.
CHILD = """
import json, os, re, resource, sys, threading, time
from fer_hf.data.prepare import prepare

def anon_kb(pid):
    try:
        status = open(f"/proc/{pid}/status").read()
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return 0
    match = re.search(r"^RssAnon:\\s+(\\d+)", status, re.M)
    return (int(match.group(1)) if match else 0) + sum(anon_kb(int(k)) for k in kids)

peak, done = [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], anon_kb(os.getpid()))
        done.wait(0.02)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
kwargs = json.loads(sys.argv[1])
started = time.perf_counter()
report = prepare(**kwargs)
wall = time.perf_counter() - started
done.set()
sampler.join()
peak_kb = max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF,
              resource.RUSAGE_CHILDREN))
print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_kb / 1024, "peak_anon_mb": peak[0] / 1024,
                  "report": report}))
"""


def synthetic_affectnet(root: Path, count: int, seed: int = 0) -> None:
    """`count` AffectNet-like images (smooth shading, a face-like ellipse, mild noise) + lists."""
    rng = np.random.default_rng(seed)
    images = root / "Manually_Annotated_Images"
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE
    rows = []
    for i in range(count):
        folder = images / str(i // 1000)
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack([xx * 120 + 60, yy * 90 + 70, (xx + yy) * 60 + 50], axis=-1)
        noisy = base + rng.normal(0, 12, size=base.shape)
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        x, y = (int(v) for v in rng.integers(40, 110, size=2))
        w, h = (int(v) for v in rng.integers(200, 280, size=2))
        ImageDraw.Draw(image).ellipse((x, y, x + w, y + h), fill=tuple(rng.integers(90, 230, 3)))
        image.save(folder / f"{i}.jpg", quality=90)
        code = int(rng.integers(0, 8))
        valence, arousal = rng.uniform(-1, 1, size=2)
        rows.append(f"{i // 1000}/{i}.jpg,{x},{y},{w},{h},,{code},{valence:.6f},{arousal:.6f}")
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    cut = max(1, count // 10)  # training.csv / validation.csv, like the official 9:1-ish split
    (lists / "training.csv").write_text("\n".join([HEADER, *rows[cut:]]) + "\n")
    (lists / "validation.csv").write_text("\n".join([HEADER, *rows[:cut]]) + "\n")


def run_prepare(**kwargs) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(kwargs, default=str)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"prepare failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def bench_affectnet(args: argparse.Namespace, work: Path) -> dict:
    largest = max(args.sizes)
    source = work / "affectnet"
    synthetic_affectnet(source, largest)
    runs = []
    for size in [10, *sorted(args.sizes)]:  # 10: warm-up (file cache, imports), not reported
        data_dir = source
        if size != largest:  # same images, shorter lists
            data_dir = work / f"affectnet-{size}"
            lists = data_dir / "Manually_Annotated_file_lists"
            lists.mkdir(parents=True)
            (data_dir / "Manually_Annotated_Images").symlink_to(
                source / "Manually_Annotated_Images"
            )
            for name in ("training.csv", "validation.csv"):
                lines = (source / lists.name / name).read_text().splitlines()
                keep = max(2, round(len(lines) * size / largest))
                (lists / name).write_text("\n".join(lines[:keep]) + "\n")
        out = work / f"out-{size}"
        result = run_prepare(
            source="affectnet",
            data_dir=str(data_dir),
            output=str(out),
            num_proc=args.num_proc,
            image_size=args.image_size,
        )
        report = result["report"]
        images = report["num_decoded"]
        if size == 10:
            continue
        runs.append(
            {
                "images": images,
                "wall_s": round(result["wall_s"], 2),
                "images_per_s": round(images / result["wall_s"], 1),
                "decode_images_per_s": report["images_per_s"],
                "peak_rss_mb": round(result["peak_rss_mb"], 1),
                "peak_anon_mb": round(result["peak_anon_mb"], 1),
                "output_mb": round(folder_mb(out), 1),
                "num_skipped": report["num_skipped"],
            }
        )
    small, big = runs[0], runs[-1]
    extra = big["images"] - small["images"]
    anon_growth = (big["peak_anon_mb"] - small["peak_anon_mb"]) / max(1, extra)
    rss_growth = (big["peak_rss_mb"] - small["peak_rss_mb"]) / max(1, extra)
    if extra > 0 and big["wall_s"] > small["wall_s"]:
        per_image = (big["wall_s"] - small["wall_s"]) / extra
        fixed = max(0.0, big["wall_s"] - per_image * big["images"])
    else:  # one size only (or noise): no way to separate start-up from per-image cost
        per_image, fixed = big["wall_s"] / big["images"], 0.0
    upper = AFFECTNET_IMAGES / big["images_per_s"]
    return {
        "layout": "affectnet-original (synthetic, face-box crops)",
        "image_px": [SIDE, SIDE],
        "num_proc": args.num_proc,
        "image_size": args.image_size,
        "runs": runs,
        "marginal_images_per_s": round(1 / per_image, 1),
        "fixed_overhead_s": round(fixed, 2),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_anon_mb": max(r["peak_anon_mb"] for r in runs),
        "peak_anon_growth_mb_per_1000_images": round(anon_growth * 1000, 2),
        "peak_rss_growth_mb_per_1000_images": round(rss_growth * 1000, 2),
        "extrapolated_420k_s": round(fixed + per_image * AFFECTNET_IMAGES),
        "extrapolated_420k_upper_bound_s": round(upper),
        "extrapolated_420k_upper_bound_h": round(upper / 3600, 2),
        "extrapolated_420k_output_gb": round(big["output_mb"] / big["images"] * 420_000 / 1024, 1),
    }


def bench_fer2013(path: Path, num_proc: int, work: Path) -> dict:
    result = run_prepare(
        source="fer2013",
        data_dir=str(path),
        output=str(work / "fer2013"),
        resample="oversample",
        num_proc=num_proc,
    )
    report = result["report"]
    return {
        "path": str(path),
        "command": f"fer-hf prepare fer2013 --data-dir {path} --output OUT --resample oversample"
        + (f" --num-proc {num_proc}" if num_proc > 1 else ""),
        "images": report["num_decoded"],
        "wall_s": round(result["wall_s"], 2),
        "images_per_s": round(report["num_decoded"] / result["wall_s"], 1),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "peak_anon_mb": round(result["peak_anon_mb"], 1),
        "train_after": report["num_records"]["train"],
        "under_2_minutes": result["wall_s"] < 120,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[500, 2000],
        help="synthetic AffectNet sample sizes (images); smallest and largest give the slope",
    )
    parser.add_argument("--num-proc", type=int, default=2, help="prepare --num-proc")
    parser.add_argument("--image-size", type=int, default=None, help="prepare --image-size")
    parser.add_argument(
        "--fer2013",
        type=Path,
        default=REPO.parent / "shared/data/fer2013",
        help="real FER2013 class-folder tree (skipped when missing)",
    )
    parser.add_argument(
        "--fer2013-num-proc", type=int, default=1, help="--num-proc for FER2013 (default 1)"
    )
    parser.add_argument("--skip-affectnet", action="store_true")
    args = parser.parse_args()
    if min(args.sizes) < 10:
        parser.error(f"--sizes must be >= 10 images each, got {args.sizes}")
    result = {"machine": machine_info(cpus=os.cpu_count())}
    with tempfile.TemporaryDirectory(prefix="fer_hf-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_affectnet:
            result["affectnet_synthetic"] = bench_affectnet(args, work)
        if args.fer2013.is_dir():
            result["fer2013"] = bench_fer2013(args.fer2013, args.fer2013_num_proc, work)
        else:
            result["fer2013"] = {"path": str(args.fer2013), "skipped": "folder not found"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
