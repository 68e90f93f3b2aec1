"""Render a model card (README.md) from a release's own files through `ModelCard.from_template`.

Every number comes from metrics.json / train_summary.json / bench JSON; never imports the cli.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..artifacts import is_trainer_checkpoint, read_json
from .card_speed import count as _count
from .card_speed import finite as _finite
from .card_speed import onnx_context, speed_context
from .card_speed import pct as _pct
from .release import Release
from .sources import ARCHITECTURES, data_source

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
MODEL_CARD_TEMPLATE = TEMPLATES_DIR / "model_card.md"
TASK = "image-classification"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# metrics.json key -> (model-index metric type, display name, extra metric args)
CLASSIFICATION_METRICS: tuple[tuple[str, str, str, dict | None], ...] = (
    ("accuracy", "accuracy", "Accuracy", None),
    ("balanced_accuracy", "balanced_accuracy", "Balanced accuracy", None),
    ("macro_f1", "f1", "Macro F1", {"average": "macro"}),
)
VA_DISPLAY = {"rmse": "RMSE", "ccc": "CCC", "pcc": "PCC", "sagr": "SAGR", "n": "n"}
VA_MODEL_INDEX = ("ccc", "rmse")  # the AffectNet paper's headline valence/arousal metrics


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def _machine(machine: Any) -> str:
    """train.py's `machine` in words, e.g. `Intel Xeon (2 cores) + 1x NVIDIA H100`."""
    if not isinstance(machine, dict):
        return str(machine)
    parts = [str(machine.get("cpu") or machine.get("platform") or "an unnamed machine")]
    if machine.get("cpu_count"):
        parts[0] += f" ({machine['cpu_count']} cores)"
    gpus = machine.get("gpus") or []
    if gpus:
        names = sorted(set(gpus))
        parts.append(", ".join(f"{gpus.count(n)}x {n}" for n in names))
    if (machine.get("num_processes") or 1) > 1:
        parts.append(f"{machine['num_processes']} processes")
    return " + ".join(parts)


def _value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list | tuple) else str(value)


def _score(name: str, value: Any) -> str:
    """A metric value as the card shows it: fractions as percentages, anything else plainly."""
    fractions = ("accuracy", "f1", "recall", "sagr")
    if _finite(value) and any(part in name for part in fractions):
        return _pct(value)
    return f"{value:.4f}" if _finite(value) else str(value)


def hub_base_model(base_model: Any) -> str | None:
    """`base_model` for the YAML: a Hub id only; a local folder is not resolvable on the Hub."""
    if not isinstance(base_model, str) or not _REPO_ID.fullmatch(base_model):
        return None
    return None if Path(base_model).exists() else base_model


def eval_results(release: Release, dataset_type: str, dataset_name: str) -> list[EvalResult]:
    """model-index entries: the classification metrics, and valence/arousal CCC/RMSE if present."""
    metrics = release.metrics or {}
    split = metrics.get("split")
    common = dict(
        task_type=TASK, dataset_type=dataset_type, dataset_name=dataset_name, dataset_split=split
    )
    results = [
        EvalResult(
            metric_type=mtype,
            metric_name=name,
            metric_value=metrics[key],
            metric_args=args,
            **common,
        )
        for key, mtype, name, args in CLASSIFICATION_METRICS
        if _finite(metrics.get(key))
    ]
    for target, values in release.va_metrics.items():
        for name in VA_MODEL_INDEX:
            if _finite(values.get(name)):
                results.append(
                    EvalResult(
                        metric_type=name,
                        metric_name=f"{target.capitalize()} {VA_DISPLAY[name]}",
                        metric_value=values[name],
                        metric_config=target,
                        **common,
                    )
                )
    return results


def _licence(release: Release, license: str | None) -> tuple[dict[str, str], str, str]:
    """(YAML licence fields, one-line summary, paragraph). The data's terms carry over."""
    source = data_source(release.dataset.get("name"))
    if license is not None:
        fields = {"license": license}
        line = f"`{license}`"
        para = f"The weights are released under `{license}`."
    elif source is not None:
        fields = {
            "license": "other",
            "license_name": source.license_name,
            "license_link": source.license_link,
        }
        line = f"inherits the {source.pretty_name} terms ({source.license_link})"
        para = f"The weights inherit the licence of their training data. {source.terms}"
    else:
        data = release.dataset.get("name")
        what = (
            f"data {data!r} is unknown to fer-hf"
            if data
            else "data is unknown (no train_summary.json)"
        )
        raise ValueError(
            f"The licence of {release.model_dir}'s training {what}, and weights inherit their "
            "data's terms; pass the licence explicitly (`license=...`, `fer-hf publish --license "
            "ID`)."
        )
    if source is not None and license is not None:
        para += f" They were trained on {source.pretty_name}: {source.terms}"
    return fields, line, para


def _input_description(release: Release) -> str:
    path = release.model_dir / "preprocessor_config.json"
    if not path.is_file():
        return "a face crop (see the image processor)"
    processor = read_json(path, "an image processor config")
    size = processor.get("size") or {}
    if isinstance(size, dict):
        size = "x".join(str(size[k]) for k in ("height", "width", "shortest_edge") if k in size)
    parts = [f"a face crop resized to {size} px" if size else "a face crop"]
    crop = processor.get("crop_size")
    if isinstance(crop, dict) and size:
        parts[0] += (
            f", then its centre {crop['height']}x{crop['width']} px (the model was trained on "
            "random crops of that size)"
        )
    channels = release.config.get("backbone_config", {}).get("num_channels")
    if channels:
        parts.append(f"{channels} channel{'s' if channels != 1 else ''}")
    if processor.get("do_grayscale"):
        parts.append("colour input converted to grayscale first")
    if processor.get("image_mean") is not None:
        parts.append(
            f"normalised with mean {processor['image_mean']}, std {processor['image_std']}"
        )
    return ", ".join(parts) + " (all stored in `preprocessor_config.json`)"


def _training_context(release: Release) -> dict[str, Any]:
    summary, dataset = release.summary or {}, release.dataset
    source = data_source(dataset.get("name"))
    ctx: dict[str, Any] = {"dataset_name": dataset.get("name"), "resample": dataset.get("resample")}
    if dataset.get("name"):
        pretty = source.pretty_name if source else dataset["name"]
        ctx["dataset_sentence"] = (
            f"Trained on {pretty} (`{dataset['name']}`), prepared with `fer-hf prepare` into the "
            f"{dataset.get('num_classes', len(release.labels))}-class fer-hf label schema."
        )
    report = release.prepare_report
    if report and ctx.get("dataset_sentence"):
        origin = (report.get("split_origin") or {}).get("validation")
        ctx["dataset_sentence"] += (
            f" `fer-hf prepare` skipped {_count(report.get('num_skipped', 0))} unreadable or "
            f"invalid records and excluded {_count(report.get('num_excluded', 0))} non-expression "
            "ones" + (f"; the validation split was {origin}." if origin else ".")
        )
    before, after = dataset.get("class_counts_before"), dataset.get("class_counts_after")
    if isinstance(before, list):
        before = dict(zip(release.labels, before, strict=False))
    if isinstance(after, list):
        after = dict(zip(release.labels, after, strict=False))
    if isinstance(before, dict) and isinstance(after, dict):
        rows = [(c, _count(before.get(c, 0)), _count(after.get(c, 0))) for c in release.labels]
        rows.append(("**total**", _count(sum(before.values())), _count(sum(after.values()))))
        ctx["class_rows"] = rows
    hyper = summary.get("hyperparameters") or {}
    ctx["hyperparameters"] = [
        (f"`{k}`", f"`{_value(v)}`") for k, v in hyper.items() if v not in (None, {}, [])
    ]
    sentence = [
        f"Trained with `train.py` (the transformers `Trainer`) as a `{release.model_kind}` model"
    ]
    if _finite(summary.get("train_runtime_s")):
        sentence.append(f" in {_duration(summary['train_runtime_s'])}")
    if summary.get("machine"):
        sentence.append(f" on {_machine(summary['machine'])}")
    sentence.append(".")
    if _finite(summary.get("best_metric")):
        name = str(summary.get("metric_for_best_model") or "validation metric")
        sentence.append(
            f" The checkpoint kept is the one with the best `{name}` on the validation split "
            f"({_score(name, summary['best_metric'])})."
        )
    average = summary.get("weight_average")
    if isinstance(average, dict) and average.get("sources"):
        sentence.append(_average_sentence(average))
    ctx["procedure_sentence"] = "".join(sentence)
    return ctx


def _average_sentence(average: dict) -> str:
    """How `fer-hf average` made the weights: the sources by folder name (never a path on the
    training machine), their weights, and the batch-norm recomputation."""
    sources, weights = average["sources"], average.get("weights") or []
    paths = [Path(str(s)) for s in sources]
    is_checkpoint = [is_trainer_checkpoint(p) for p in paths]
    runs = list(
        dict.fromkeys(p.parent.name for p, c in zip(paths, is_checkpoint, strict=True) if c)
    )
    # a step number alone would not say which run: name checkpoints by run once there are two
    # runs, or other models beside them
    by_run = len(runs) > 1 or not all(is_checkpoint)
    labels = [
        f"`{p.parent.name}/{p.name}`" if c and by_run else f"`{p.name}`"
        for p, c in zip(paths, is_checkpoint, strict=True)
    ]
    names = labels
    if weights and len(set(weights)) > 1 and len(weights) == len(labels):
        names = [f"{n} ({w:.2f})" for n, w in zip(labels, weights, strict=True)]
    one_run = all(is_checkpoint) and len(runs) == 1
    if one_run:  # SWA over Trainer checkpoints, named by step
        what, whose = f"checkpoints of one run `{runs[0]}`", "that run's"
    elif all(is_checkpoint):
        what, whose = f"checkpoints of {len(runs)} runs", "the first run's"
    elif not any(is_checkpoint):
        what, whose = "runs of this architecture", "the first run's"
    else:  # e.g. a release averaged with the checkpoints of runs trained from it
        what, whose = "models of this architecture", f"those of {labels[0]}'s run"
    text = (
        f" The released weights are the average of {len(sources)} {what} (stochastic weight "
        f"averaging with `fer-hf average`: {', '.join(names)}); the hyperparameters below are "
        f"{whose}."
    )
    bn = average.get("batch_norm_recomputed")
    if isinstance(bn, dict) and bn.get("images"):
        text += (
            f" Batch-norm statistics were recomputed on {_count(bn['images'])} "
            f"{bn.get('split') or 'training'} images."
        )
    return text


def _pretty(name: str | None) -> str:
    source = data_source(name)
    return source.pretty_name if source else (name or "")


def _caveat(release: Release, where: str, same_data: bool) -> str:
    if not same_data:
        train = _pretty(release.dataset.get("name")) or "the training data"
        return (
            f"These figures come from {where}, not from {train}, the training data: they are a "
            "cross-dataset measurement. Other datasets, cameras and populations will differ again; "
            "evaluate on your own data before relying on the model."
        )
    return (
        f"These figures come from {where}, drawn from the same source as the training data. "
        "Accuracy on faces from other datasets, cameras, populations or recording conditions "
        "is usually much lower; evaluate on your own data before relying on it."
    )


def _results_context(release: Release) -> dict[str, Any]:
    metrics = release.metrics
    if metrics is None:
        return {}
    split, tta = metrics.get("split"), metrics.get("tta")
    eval_name, same_data = release.eval_dataset
    dataset_pretty = _pretty(eval_name) or "the evaluation data"
    where = f"the `{split}` split of {dataset_pretty}" if split else dataset_pretty
    ctx: dict[str, Any] = {
        "evaluation_sentence": (
            f"`fer-hf evaluate` on {where} ({_count(metrics['n'])} images"
            + (f", test-time augmentation `{tta}`" if tta not in (None, "none") else "")
            + ")."
        ),
        "metric_rows": [(name, _pct(metrics[key])) for key, _, name, _ in CLASSIFICATION_METRICS],
        "recall_rows": [(c, _pct(metrics["per_class_recall"].get(c))) for c in release.labels],
        "cross_dataset_caveat": _caveat(release, where, same_data),
    }
    va = release.va_metrics
    if va:
        columns = [k for k in VA_DISPLAY if any(k in v for v in va.values())]
        ctx["va_columns"] = [VA_DISPLAY[k] for k in columns]
        ctx["va_rows"] = [
            [target, *(_fmt_va(k, values.get(k)) for k in columns)] for target, values in va.items()
        ]
    matrix = metrics.get("confusion_matrix")
    if matrix:
        ctx["confusion_rows"] = [
            [label, *(_count(int(v)) for v in row)]
            for label, row in zip(matrix["labels"], matrix["matrix"], strict=True)
        ]
    if release.confusion_png is not None:
        ctx["confusion_image"] = release.confusion_png.name
    return ctx


def _fmt_va(key: str, value: Any) -> str:
    if key == "n":
        return _count(int(value)) if _finite(value) else "n/a"
    return f"{value:.4f}" if _finite(value) else "n/a (undefined)"


def build_card_data(release: Release, repo_id: str, license: str | None = None) -> ModelCardData:
    """The card's YAML header: licence, datasets, base_model, tags, pipeline tag, model-index."""
    dataset = release.dataset
    eval_name = release.eval_dataset[0] or "unknown"
    fields, _, _ = _licence(release, license)
    tags = ["fer-hf", "facial-expression-recognition", TASK, release.model_kind]
    if release.va_metrics or release.config.get("valence_arousal"):
        tags.append("valence-arousal")
    if release.onnx_files:
        tags.append("onnx")
    results = eval_results(release, eval_name, _pretty(eval_name)) if release.metrics else None
    return ModelCardData(
        model_name=repo_id.split("/")[-1],
        eval_results=results or None,
        pipeline_tag=TASK,
        library_name="transformers",
        datasets=[dataset["name"]] if dataset.get("name") else None,
        base_model=hub_base_model((release.summary or {}).get("base_model")),
        tags=tags,
        metrics=[r.metric_type for r in results or []] or None,
        **fields,
    )


def _initialisation(base_model: Any) -> str:
    if not base_model:
        return "trained from scratch (no pretrained weights)"
    if hub_base_model(base_model):
        return f"backbone initialised from [`{base_model}`](https://huggingface.co/{base_model})"
    # A local folder: its name only, never a path on the training machine.
    return f"backbone initialised from a local checkpoint (`{Path(base_model).name}`)"


def render_model_card(release: Release, repo_id: str, license: str | None = None) -> ModelCard:
    """The model card for `release`, to be published as `repo_id`'s README.md.

    Sections whose source file is absent (metrics.json, train_summary.json, bench JSON) are left
    out; a missing licence for unknown training data is a `ValueError`.
    """
    if not _REPO_ID.fullmatch(repo_id):
        raise ValueError(f"`repo_id` must look like 'owner/name', got {repo_id!r}.")
    card_data = build_card_data(release, repo_id, license)
    _, licence_line, licence_paragraph = _licence(release, license)
    backbone_type = release.config.get("backbone_config", {}).get("model_type", "")
    architecture, arch_bibtex = ARCHITECTURES.get(
        backbone_type, (f"a `{backbone_type or 'custom'}` backbone", ())
    )
    source = data_source(release.dataset.get("name"))
    dataset_pretty = source.pretty_name if source else (release.dataset.get("name") or "")
    has_va = bool(release.va_metrics or release.config.get("valence_arousal"))
    name = repo_id.split("/")[-1]
    context: dict[str, Any] = {
        "title": name,
        "repo_id": repo_id,
        "summary": (
            f"Recognises {len(release.labels)} facial expressions in face crops"
            f"{' and predicts valence and arousal' if has_va else ''}: a `{release.model_kind}` "
            f"model{' trained on ' + dataset_pretty if dataset_pretty else ''} with fer-hf."
        ),
        "architecture": architecture,
        "num_parameters": _count(release.num_parameters),
        "input_description": _input_description(release),
        "labels": release.labels,
        "has_va": has_va,
        "initialisation": _initialisation((release.summary or {}).get("base_model")),
        "licence_line": licence_line,
        "licence_paragraph": licence_paragraph,
        **onnx_context(release),
        "data_limitation": source.limitation if source else None,
        "bibtex": "\n\n".join([*arch_bibtex, *([source.bibtex] if source else [])]),
        **_training_context(release),
        **_results_context(release),
        **speed_context(release),
    }
    card = ModelCard.from_template(card_data, template_path=str(MODEL_CARD_TEMPLATE), **context)
    # Jinja leaves blank runs where optional sections were skipped; markdown needs one at most.
    return ModelCard(re.sub(r"\n{3,}", "\n\n", str(card)).rstrip() + "\n")
