"""One training run end to end: checks, data, model, `FerTrainer`, best model, train_summary.json.

Imports fer_hf.data, models, metrics and training siblings; never export, hub or cli.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from ..artifacts import SUMMARY_FILE, machine_info, write_json
from ..data import class_weights as compute_class_weights
from ..metrics import build_compute_metrics
from ..models import (
    BACKBONE_TYPES,
    build_model,
    from_pretrained_backbone,
    label_names,
    load_model_folder,
)
from .augment import BatchAugmenter
from .batches import UInt8Collator, cache_dir_for, decoded_split
from .data import TrainingData, has_valence_arousal, load_training_data, seeded_sample
from .precision import apply_precision, cpu_summary, resolve_precision
from .trainer import FerTrainer, describe_loss
from .transforms import Augmentation, FerTransform, collate

logger = logging.getLogger(__name__)

_HYPERPARAMETERS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "optim",
    "lr_scheduler_type",
    "warmup_ratio",
    "warmup_steps",
    "max_grad_norm",
    "seed",
    "bf16",
    "fp16",
    "torch_compile",
    "dataloader_num_workers",
    "metric_for_best_model",
)


def _read_config(folder: Path) -> dict | None:
    config = folder / "config.json"
    return json.loads(config.read_text()) if config.is_file() else None


def _load_fer_model(path: str, data: TrainingData, role: str):
    """A trained fer-hf model folder (and its processor), checked against the data's labels."""
    model, processor = load_model_folder(path)
    labels = label_names(model.config)
    if labels != data.label_names:
        raise ValueError(
            f"The {role} model {path} predicts {labels} but the data has {data.label_names}; "
            f"use a {role} trained on the same label schema."
        )
    return model, processor


def build_model_for(model_args, data: TrainingData, valence_arousal: bool):
    """(model, processor): random init, a pretrained backbone, or a fer-hf folder to fine-tune."""
    overrides = dict(model_args.model_overrides or {})
    source = model_args.model_name_or_path
    if source is None:
        return build_model(
            model_args.model_kind,
            image_size=model_args.image_size,
            num_classes=data.num_classes,
            valence_arousal=valence_arousal,
            **overrides,
        )
    config = _read_config(Path(source)) if Path(source).is_dir() else None
    same_head = (
        config is not None
        and config.get("model_type") == "fer_expression"
        and list(config.get("id2label", {}).values()) == data.label_names
        and bool(config.get("valence_arousal")) == valence_arousal
    )
    if same_head:  # continue training a fer-hf model with its own heads
        backbone = config.get("backbone_config", {}).get("model_type")
        if backbone != BACKBONE_TYPES[model_args.model_kind]:
            raise ValueError(
                f"{source} holds a {backbone!r} backbone but --model_kind is "
                f"{model_args.model_kind!r} (a {BACKBONE_TYPES[model_args.model_kind]!r} "
                "backbone); set the model kind the folder was trained as."
            )
        if model_args.image_size is not None or overrides:
            raise ValueError(
                f"{source} is a complete fer-hf model; its image size and config are fixed, so "
                "drop --image_size/--model_overrides (or start from its backbone only with a "
                "different label set)."
            )
        return _load_fer_model(source, data, "initial")
    return from_pretrained_backbone(
        model_args.model_kind,
        source,
        num_classes=data.num_classes,
        valence_arousal=valence_arousal,
        image_size=model_args.image_size,
        **overrides,
    )


def run_machine_info(training_args) -> dict:
    """Where the run happened: hardware, world size and library versions."""
    return machine_info(
        cpu_summary(),
        device=str(training_args.device),
        gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        num_processes=training_args.world_size,
        distributed_type=str(training_args.distributed_state.distributed_type).split(".")[-1],
        versions={"torch": torch.__version__, "transformers": transformers.__version__},
    )


def _teacher_precision(teacher, training_args):
    """A distillation teacher runs forward-only under the precision `auto` picks for its kind
    (bf16 for a ResNet or ViT teacher where bf16 is native, whatever the student uses)."""
    backbone = teacher.config.backbone_config.model_type
    kind = next(k for k, v in BACKBONE_TYPES.items() if v == backbone)
    return resolve_precision(
        kind,
        training_args.precision,
        "auto",
        training_args.device,
        getattr(teacher.config.backbone_config, "factorization", None),
    )


def _resume_checkpoint(training_args) -> str | None:
    requested = training_args.resume_from_checkpoint
    output_dir = training_args.output_dir
    last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if requested is None:
        if last is not None and not training_args.overwrite_output_dir:
            logger.warning(
                "Checkpoint found, resuming from %s (--overwrite_output_dir to restart).", last
            )
            return last
        return None
    if requested.lower() in ("true", "last"):
        if last is None:
            raise ValueError(
                f"--resume_from_checkpoint {requested}: no checkpoint-* folder in {output_dir}."
            )
        return last
    if not os.path.isdir(requested):
        raise FileNotFoundError(
            f"--resume_from_checkpoint {requested!r} is not a checkpoint folder."
        )
    return requested


def _prefixless(metrics: dict, prefix: str) -> dict:
    return {k.removeprefix(f"{prefix}_"): v for k, v in metrics.items()}


def summary_line(summary: dict) -> str:
    """The one line a run ends with."""
    ev = summary["eval_metrics"]
    parts = [
        f"fer-hf train: {summary['model_kind']} on {summary['dataset']['name']} "
        f"({summary['dataset']['num_classes']} classes)",
        f"{summary['global_step']} steps in {summary['train_runtime_s']:.0f}s "
        f"({summary['train_samples_per_s']:.1f} samples/s, {summary['machine']['num_processes']} "
        f"process(es))",
        f"{ev['split']}: accuracy {ev['accuracy']:.4f}, balanced_accuracy "
        f"{ev['balanced_accuracy']:.4f}, macro_f1 {ev['macro_f1']:.4f}",
    ]
    test = summary.get("test_metrics")
    if test:
        parts.append(f"{test['split']}: balanced_accuracy {test['balanced_accuracy']:.4f}")
    parts.append(f"best model in {summary['output_dir']}")
    return " | ".join(parts)


def calibration_pixel_values(dataset, processor, num_samples: int, seed: int) -> torch.Tensor:
    """`num_samples` records of `dataset` (seeded draw), preprocessed without augmentation."""
    picked = seeded_sample(dataset, num_samples, seed)
    return FerTransform(processor)(picked[:])["pixel_values"]


def train(model_args, data_args, training_args, callbacks=None) -> dict:
    """Run one training; returns the summary also written to `output_dir/train_summary.json`.

    Every check (data schema, splits, labels, valence/arousal, teacher, checkpoint) runs before
    the first step. The best checkpoint (by `metric_for_best_model`) ends up in `output_dir` with
    its processor, evaluated on the eval split (and the test split when there is one).
    """
    if training_args.quantization_aware and model_args.model_kind != "factorized":
        raise ValueError(
            f"--quantization_aware supports model_kind factorized (the model whose int8 export is "
            f"its fast path), not {model_args.model_kind!r}."
        )
    seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    data = load_training_data(data_args, seed)
    if model_args.valence_arousal and not has_valence_arousal(data.train):
        raise ValueError(
            f"--valence_arousal needs valence/arousal targets, but the train split of "
            f"{data_args.dataset} has none (all NaN); drop the flag or use AffectNet."
        )
    teachers, teacher_processors, teacher_bf16 = [], [], []
    for path in training_args.teacher_paths():
        teacher, teacher_processor = _load_fer_model(path, data, "teacher")
        chosen = _teacher_precision(teacher, training_args)
        teachers.append(apply_precision(teacher, chosen))
        teacher_processors.append(teacher_processor)
        teacher_bf16.append(chosen.bf16)
    checkpoint = _resume_checkpoint(training_args)

    set_seed(training_args.seed)
    model, processor = build_model_for(model_args, data, model_args.valence_arousal)
    precision = resolve_precision(
        model_args.model_kind,
        "bf16" if training_args.bf16 else training_args.precision,
        training_args.channels_last,
        training_args.device,
        getattr(model.config.backbone_config, "factorization", None),
    )
    logger.info(
        "Training %s in %s, %s (%s).",
        model_args.model_kind,
        precision.dtype,
        precision.memory_format,
        precision.reason,
    )
    model = apply_precision(model, precision)
    if precision.attention is not None:
        logger.info("Training with %s attention (faster than SDPA here).", precision.attention)
    augmentation = None
    if data_args.augment:
        augmentation = Augmentation(
            crop_scale=tuple(data_args.crop_scale),
            crop_ratio=tuple(data_args.crop_ratio),
            hflip_prob=data_args.hflip_prob,
            rotation_degrees=data_args.rotation_degrees,
            brightness=data_args.brightness,
            contrast=data_args.contrast,
            erasing_prob=data_args.erasing_prob,
        )
    train_labels = np.asarray(data.train["label"], dtype=np.int64)
    weights = None
    if training_args.imbalance in ("weighted_loss", "focal"):
        counts = np.bincount(train_labels, minlength=data.num_classes)
        weights = compute_class_weights(counts, method=training_args.class_weight_method)

    calibration = None
    if training_args.quantization_aware:
        calibration = calibration_pixel_values(
            data.train, processor, training_args.qat_calibration_samples, seed
        )
        if training_args.qat_clip_percentile is not None:
            from .quantization_aware import calibrate_activation_clips, with_activation_clips

            model = with_activation_clips(model)
            calibrate_activation_clips(model, calibration, training_args.qat_clip_percentile)
    if data_args.crop_size is not None and model_args.model_kind == "vit":
        raise ValueError(
            "`crop_size` trains on smaller crops than the model's input; a ViT takes one input "
            "size only. Drop crop_size (the random resized crop applies) or train a CNN kind."
        )
    if data_args.crop_size is not None:  # recorded with the model: ten-crop TTA matches it
        model.config.train_crop_size = data_args.crop_size
    else:  # a crop-trained model trained further on whole faces is no longer one
        model.config.train_crop_size = None
    # A model trained on random crops is served one centre crop of that size (the processor's
    # `crop_size`): its training scale. Evaluation here (and in the saved folder) does the same;
    # decoding and the random crops work on the processor's full `size`.
    crop = data_args.crop_size
    processor.crop_size = None if crop is None else {"height": crop, "width": crop}
    augmenter = test_dataset = None
    if data_args.data_pipeline == "decoded":
        cache_dir = cache_dir_for(data_args, training_args.output_dir)
        with training_args.main_process_first(desc="decoding the splits"):
            train_dataset = decoded_split(
                data.train_base,
                data.train,
                data.train_rows,
                cache_dir,
                data_args.train_split,
                processor,
            )
            eval_dataset = decoded_split(
                data.eval_base,
                data.eval,
                data.eval_rows,
                cache_dir,
                data_args.eval_split,
                processor,
            )
            if data.test is not None:
                test_dataset = decoded_split(
                    data.test, data.test, None, cache_dir, data_args.test_split, processor
                )
        collator = UInt8Collator(train_dataset.array_path)
        eval_collator = UInt8Collator(eval_dataset.array_path)
        if augmentation is not None:
            augmenter = BatchAugmenter(processor, augmentation, crop_size=data_args.crop_size)
    else:
        train_dataset = data.train.with_transform(FerTransform(processor, augmentation))
        eval_dataset = data.eval.with_transform(FerTransform(processor))
        if data.test is not None:
            test_dataset = data.test.with_transform(FerTransform(processor))
        collator = eval_collator = collate
    trainer = FerTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        compute_metrics=build_compute_metrics(data.label_names),
        callbacks=callbacks,
        train_labels=train_labels,
        class_weights=weights,
        teacher=teachers,
        teacher_processor=teacher_processors,
        quantization_calibration=calibration,
        train_bf16=precision.bf16,
        augmenter=augmenter,
        eval_collator=eval_collator,
        channels_last=precision.channels_last,
        teacher_bf16=teacher_bf16,
    )
    # What is known before the first step is written now, so that a run stopped early (killed, or
    # out of time) still records its data and recipe: `fer-hf average` of its checkpoint-* folders
    # and `fer-hf release` of that average read it. The finished run rewrites the file.
    provenance = {
        "model_kind": model_args.model_kind,
        "base_model": model_args.model_name_or_path,
        "dataset": data.info,
        "hyperparameters": {
            **{name: getattr(training_args, name) for name in _HYPERPARAMETERS},
            "total_train_batch_size": training_args.per_device_train_batch_size
            * training_args.gradient_accumulation_steps
            * training_args.world_size,
            "image_size": model.config.image_size,
            "num_channels": model.config.num_channels,
            "valence_arousal": model_args.valence_arousal,
            "model_overrides": model_args.model_overrides,
            "loss": describe_loss(training_args),
            "augmentation": augmentation.__dict__ if augmentation is not None else None,
            "data_pipeline": data_args.data_pipeline,
            "crop_size": data_args.crop_size,
            "precision": {
                "dtype": precision.dtype,
                "memory_format": precision.memory_format,
                "reason": precision.reason,
            },
        },
        "resumed_from": checkpoint,
        "machine": run_machine_info(training_args),
        "metric_for_best_model": training_args.metric_for_best_model,
        "output_dir": str(Path(training_args.output_dir).resolve()),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    if trainer.is_world_process_zero():
        Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
        write_json(
            Path(training_args.output_dir) / SUMMARY_FILE, {**provenance, "in_progress": True}
        )
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    runtime = time.perf_counter() - started
    trainer.save_model()  # the best checkpoint, with its processor
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()

    eval_metrics = trainer.evaluate(metric_key_prefix="eval")
    trainer.save_metrics("eval", eval_metrics)
    test_metrics = None
    if test_dataset is not None:
        if data_args.data_pipeline == "decoded":
            trainer.eval_collator = UInt8Collator(test_dataset.array_path)
        test_metrics = trainer.evaluate(test_dataset, metric_key_prefix="test")
        trainer.save_metrics("test", test_metrics)

    state = trainer.state
    summary = {
        **provenance,
        "global_step": state.global_step,
        "train_runtime_s": round(runtime, 3),
        "train_samples_per_s": result.metrics.get("train_samples_per_second", 0.0),
        "train_loss": result.metrics.get("train_loss"),
        "best_metric": state.best_metric,
        "best_model_checkpoint": state.best_model_checkpoint,
        "eval_metrics": {"split": data_args.eval_split, **_prefixless(eval_metrics, "eval")},
        "test_metrics": (
            {"split": data_args.test_split, **_prefixless(test_metrics, "test")}
            if test_metrics is not None
            else None
        ),
    }
    if trainer.is_world_process_zero():
        write_json(Path(training_args.output_dir) / SUMMARY_FILE, summary)
        print(summary_line(summary), flush=True)
    return summary


def main(argv=None, prog: str | None = None) -> int:
    """Parse flags or a YAML file (see `arguments.parse_args`), set up logging, train."""
    import datasets

    from .arguments import parse_args

    model_args, data_args, training_args = parse_args(argv, prog=prog)
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    logging.getLogger("fer_hf").setLevel(level)
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.set_verbosity(logging.WARNING)
    train(model_args, data_args, training_args)
    return 0
