"""fer-hf Gradio demo: expressions of every face in a photo or a webcam stream, any model x backend.

Launch (offline, on the bundled checkpoints/fer2013-*): `make demo`, i.e. `python space/app.py`
(port from GRADIO_SERVER_PORT, default 7860). Uses only fer_hf's public API; see space/README.md.
"""

from __future__ import annotations

import atexit
import html
import logging
import os
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from fer_space import (  # noqa: E402
    MAX_UPLOAD_BYTES,
    FaceTracks,
    ModelZoo,
    claim_run_dir,
    logger,
    model_sources,
    read_upload,
    sweep_run_dirs,
)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402
from PIL import Image  # noqa: E402

from fer_hf.inference import BACKENDS, annotate, label_colour  # noqa: E402

DISPLAY_SIDE = 1600  # annotated photos are shown at most this large; boxes stay in input pixels
STREAM_EVERY_S = 0.1
STREAM_TIME_LIMIT_S = 120  # a webcam session then stops, freeing the worker for others
RESPONSIBLE_USE = (
    "**Responsible use.** This demo labels visible facial *expressions* (the movement of facial "
    "muscles), not the emotions a person feels: a smile is not proof of happiness, and expression "
    "display varies across people, cultures and contexts. Do not use it to make decisions about "
    "people. Inferring emotions in workplaces and education institutions is prohibited in the EU "
    "(AI Act, Art. 5(1)(f)). Photos and webcam frames are not kept: the server deletes them "
    "within minutes, and all of them when it stops."
)
NO_FACE = (
    "**No face found.** The face detector (BlazeFace) finds faces from about 30 px wide, rolled "
    "up to about 40 degrees; try a larger, well-lit face turned towards the camera."
)
CSS = """
.fer-face { margin: 0 0 12px 0; }
.fer-title { font-weight: 600; margin-bottom: 4px; }
.fer-swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }
.fer-row { display: flex; align-items: center; gap: 8px; font-size: 0.9em; }
.fer-name { width: 72px; }
.fer-bar { flex: 1; height: 10px; background: rgba(128, 128, 128, 0.2); }
.fer-fill { display: block; height: 100%; }
.fer-value { width: 44px; text-align: right; font-variant-numeric: tabular-nums; }
"""


def user_errors(fn: Callable) -> Callable:
    """Library errors become `gr.Error` with the same text; users never see a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError, FileNotFoundError, OSError) as err:
            raise gr.Error(html.escape(str(err), quote=False), print_exception=False) from None

    return wrapper


def _rgb(label: str) -> str:
    return "rgb({},{},{})".format(*label_colour(label))


def bars_html(faces: list[dict[str, Any]], labels: Sequence[str]) -> str:
    """Per-face probability bars in the model's label order, coloured like the boxes."""
    blocks = []
    for i, face in enumerate(faces, start=1):
        title = f"Face {i}: {face['label']} {face['scores'][face['label']]:.0%}"
        if face["valence"] is not None:
            title += f" · valence {face['valence']:+.2f} · arousal {face['arousal']:+.2f}"
        rows = "".join(
            f'<div class="fer-row"><span class="fer-name">{html.escape(label)}</span>'
            f'<span class="fer-bar"><span class="fer-fill" style="width:{100 * p:.1f}%;'
            f'background:{_rgb(label)}"></span></span><span class="fer-value">{p:.0%}</span></div>'
            for label, p in ((label, face["scores"][label]) for label in labels)
        )
        swatch = f'<span class="fer-swatch" style="background:{_rgb(face["label"])}"></span>'
        blocks.append(
            f'<div class="fer-face" data-face="{i}"><div class="fer-title">{swatch}'
            f"{html.escape(title)}</div>{rows}</div>"
        )
    return f'<div class="fer-faces">{"".join(blocks)}</div>'


def circumplex_figure(faces: list[dict[str, Any]]) -> Figure:
    """Each face's valence (x) and arousal (y) on Russell's circumplex, numbered like the bars."""
    fig = Figure(figsize=(4.2, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="0.6", lw=0.8))
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    for x, y, text in ((0.7, 0.85, "excited"), (0.7, -0.85, "calm"), (-0.7, 0.85, "tense"),
                       (-0.7, -0.85, "bored")):  # fmt: skip
        ax.text(x, y, text, ha="center", va="center", color="0.45", fontsize=9)
    for i, face in enumerate(faces, start=1):
        point = (face["valence"], face["arousal"])
        colour = tuple(c / 255 for c in label_colour(face["label"]))
        ax.scatter(*point, s=80, color=colour, edgecolor="black", zorder=3)
        ax.annotate(str(i), point, xytext=(6, 6), textcoords="offset points")
    ax.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), xlabel="valence", ylabel="arousal", aspect="equal")
    ax.set_title("Valence / arousal", fontsize=10)
    return fig


def _display(image: Image.Image) -> Image.Image:
    if max(image.size) > DISPLAY_SIDE:
        image = image.copy()
        image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    return image


def build_demo(
    sources: dict[str, str],
    cache_dir: str | Path,
    examples: Sequence[str] = (),
    concurrency: int = 2,
    detector: str = "blazeface",
) -> gr.Blocks:
    """The app serving `sources` (name -> model folder or Hub id; the first is the default).

    `cache_dir` receives ONNX exports made on first use; `concurrency` bounds the simultaneous
    predictions (photos and API calls share one pool, webcam streams have their own), which
    run in parallel threads; up to 64 more wait in the queue. `detector` is "blazeface" (one
    thread-safe DNN detector for all workers) or "haar" (a pool of OpenCV cascades).
    """
    zoo = ModelZoo(sources, cache_dir, workers=concurrency, detector=detector)
    names = list(sources)
    hidden_plot = gr.update(visible=False, value=None)

    @user_errors
    def analyse_photo(payload, model, backend):
        image = read_upload(payload)
        if image is None:
            return None, "", "", hidden_plot, None
        predictor = zoo.get(model, backend)
        start = time.perf_counter()
        faces = predictor.predict(image)
        ms = 1000 * (time.perf_counter() - start)
        if not faces:
            return _display(image), NO_FACE, "", hidden_plot, []
        status = f"{len(faces)} face{'s' * (len(faces) > 1)} · {model} ({backend}) · {ms:.0f} ms"
        plot = hidden_plot
        if predictor.has_valence_arousal:
            plot = gr.update(visible=True, value=circumplex_figure(faces))
        drawn = _display(annotate(image, faces))
        return drawn, status, bars_html(faces, predictor.labels), plot, faces

    @user_errors
    def predict_json(payload, model, backend):
        image = read_upload(payload)
        if image is None:
            raise ValueError("No image received; send an image file.")
        return zoo.get(model, backend).predict(image)

    def webcam_frame(frame: np.ndarray | None, model, backend, tracks: FaceTracks):
        if frame is None:
            return None, "", tracks
        try:
            image, faces, labels = zoo.predict_frame(model, backend, frame)
        except (ValueError, TypeError, FileNotFoundError, OSError) as err:
            # Shown in place of the bars: an error toast 10 times a second would bury the page.
            return None, f"<p><b>Error:</b> {html.escape(str(err))}</p>", tracks
        faces = tracks.update(faces, labels)
        bars = bars_html(faces, labels) if faces else "No face in view."
        return annotate(image, faces), bars, tracks

    # Gradio 6 moves theme/css to launch() and api_name=False to api_visibility; 5.50 (pinned)
    # has neither, so its notices about them say nothing actionable here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Gradio 6", category=DeprecationWarning)
        with gr.Blocks(
            title="fer-hf: facial expression recognition",
            # System fonts: the default theme makes every browser fetch Google Fonts.
            theme=gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"]),
            css=CSS,
            analytics_enabled=False,
            delete_cache=(60, 300),  # uploads and results are deleted within ~6 minutes
        ) as demo:
            gr.Markdown("# fer-hf: facial expression recognition")
            gr.Markdown(RESPONSIBLE_USE, elem_id="responsible-use")
            if zoo.missing():
                gr.Markdown(
                    f"**Not available yet:** {', '.join(zoo.missing())} (no such folder). Train "
                    "the model or set FER_HF_MODELS; see space/README.md.",
                    elem_id="missing-models",
                )
            with gr.Row():
                model = gr.Dropdown(names, value=names[0], label="Model", elem_id="model")
                backend = gr.Radio(
                    list(BACKENDS), value="torch", label="Backend", elem_id="backend"
                )
            with gr.Tab("Photo", id="photo"):
                with gr.Row():
                    with gr.Column():
                        photo = gr.Image(
                            sources=["upload", "clipboard"], type="filepath", label="Photo",
                            elem_id="photo",
                        )  # fmt: skip
                        run = gr.Button("Recognise expressions", variant="primary", elem_id="run")
                        gallery = None
                        if examples:
                            gallery = gr.Examples(
                                [[e] for e in examples], inputs=[photo], label="Examples"
                            )
                    with gr.Column():
                        annotated = gr.Image(label="Faces", interactive=False, elem_id="annotated")
                        status = gr.Markdown(elem_id="status")
                        bars = gr.HTML(elem_id="bars")
                        circumplex = gr.Plot(
                            label="Circumplex", visible=False, elem_id="circumplex"
                        )
                        result = gr.JSON(label="JSON result", elem_id="result")
            with gr.Tab("Webcam", id="webcam"):
                with gr.Row():
                    # Not mirrored: the live output shows the frames as captured, so a mirrored
                    # preview beside it would show every face on the other side.
                    camera = gr.Image(
                        sources=["webcam"], streaming=True, type="numpy", label="Webcam",
                        elem_id="camera", webcam_options=gr.WebcamOptions(mirror=False),
                    )  # fmt: skip
                    live = gr.Image(label="Live", interactive=False, format="jpeg", elem_id="live")
                live_bars = gr.HTML(elem_id="live-bars")
                tracks = gr.State(FaceTracks())  # copied per browser session
            # The API for scripts and checks: image in, the list of faces out.
            api_image = gr.Image(type="filepath", visible=False)
            api_model = gr.Dropdown(names, value=names[0], visible=False)
            api_backend = gr.Dropdown(list(BACKENDS), value="torch", visible=False)
            api_result = gr.JSON(visible=False)
            api_button = gr.Button(visible=False)

            # `photo.upload` fires once the file is on the server; `photo.change` also fires while
            # a replacing photo is still uploading, which made Gradio warn "Waiting for file(s) to
            # finish uploading" twice per replaced photo. Examples and clearing are wired apart.
            photo_outputs = [annotated, status, bars, circumplex, result]
            photo_event = {
                "inputs": [photo, model, backend],
                "outputs": photo_outputs,
                "preprocess": False,  # read_upload opens the file: clear errors for bad uploads
                "concurrency_id": "inference",
                "concurrency_limit": concurrency,
            }
            gr.on(
                [run.click, photo.upload, model.change, backend.change],
                analyse_photo,
                api_name="analyse_photo",
                **photo_event,
            )
            if gallery is not None:  # an example is already on the server: nothing to wait for
                gallery.load_input_event.then(analyse_photo, api_name=False, **photo_event)
            photo.clear(
                lambda: (None, "", "", hidden_plot, None),
                outputs=photo_outputs,
                api_name=False,
                queue=False,
            )
            api_button.click(
                predict_json,
                inputs=[api_image, api_model, api_backend],
                outputs=[api_result],
                api_name="predict_json",
                preprocess=False,
                concurrency_id="inference",
            )
            camera.stream(
                webcam_frame,
                inputs=[camera, model, backend, tracks],
                outputs=[live, live_bars, tracks],
                stream_every=STREAM_EVERY_S,
                time_limit=STREAM_TIME_LIMIT_S,
                show_progress="hidden",
                concurrency_id="webcam",
                concurrency_limit=concurrency,
                api_name=False,
            )
    return demo.queue(default_concurrency_limit=concurrency, max_size=64)


def write_examples(folder: Path) -> list[str]:
    """Offline example photos: one face, two faces, none (scikit-image's bundled images)."""
    try:
        from skimage import data
    except ImportError:
        logger.warning("scikit-image is not installed; the demo starts without examples")
        return []
    astronaut = data.astronaut()
    images = {
        "astronaut.png": astronaut,
        "two_faces.png": np.concatenate([astronaut, astronaut[:, ::-1]], axis=1),
        "no_face.png": data.coffee(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in images.items():
        Image.fromarray(array).save(folder / name)
    return [str(folder / name) for name in images]


def _stop_on_sigterm(signum, frame) -> None:
    # `demo.launch()` closes the server on KeyboardInterrupt (Ctrl-C, SIGINT); a SIGTERM (docker
    # stop, kill, a Space restart) takes the same way out, so the uploads are deleted either way.
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    """Read the environment, build the app and serve it (GRADIO_SERVER_PORT / _NAME apply).

    Uploads, results and the example photos live in one folder per run under GRADIO_TEMP_DIR
    (default: <tmp>/fer-hf-space), deleted when the server stops (SIGINT or SIGTERM); a server
    that starts first deletes the folders of runs that are no longer running (e.g. SIGKILLed).
    """
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    on_space = bool(os.environ.get("SPACE_ID"))  # set by Hugging Face Spaces
    sources = model_sources(
        os.environ.get("FER_HF_MODELS"),
        space_readme=Path(__file__).with_name("README.md") if on_space else None,
    )
    cache_dir = os.environ.get("FER_HF_CACHE") or Path.home() / ".cache" / "fer-hf" / "space-onnx"
    concurrency = os.environ.get("FER_HF_CONCURRENCY", "2")
    if not concurrency.isdigit() or int(concurrency) < 1:
        raise ValueError(f"FER_HF_CONCURRENCY must be a positive integer, got {concurrency!r}.")
    uploads_base = Path(
        os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "fer-hf-space"
    )
    for stale in sweep_run_dirs(uploads_base):
        logger.info("Deleted %s, left by a server that is no longer running", stale)
    run_dir = claim_run_dir(uploads_base)
    atexit.register(shutil.rmtree, run_dir, ignore_errors=True)  # also on an error exit
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # SIGINT too: a server started in the background (`cmd &`, nohup) inherits SIGINT ignored.
    signal.signal(signal.SIGINT, _stop_on_sigterm)
    # Gradio reads GRADIO_TEMP_DIR when the app is built: every upload and result of this run
    # goes to run_dir/gradio.
    os.environ["GRADIO_TEMP_DIR"] = str(run_dir / "gradio")
    examples_dir = run_dir / "examples"
    try:
        demo = build_demo(
            sources,
            cache_dir,
            write_examples(examples_dir),
            int(concurrency),
            detector=os.environ.get("FER_HF_DETECTOR", "blazeface"),
        )
        logger.info("Serving %s (ONNX exports cached in %s; uploads in %s)", sources, cache_dir,
                    run_dir)  # fmt: skip
        demo.launch(max_file_size=MAX_UPLOAD_BYTES, allowed_paths=[str(examples_dir)])
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        logger.info("Stopped; deleted %s", run_dir)


if __name__ == "__main__":
    main()
