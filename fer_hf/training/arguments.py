"""Run-time knobs for training: model, data and `TrainingArguments` dataclasses, flags or one YAML.

Imports only transformers (and yaml); never fer_hf.export, hub or cli.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from transformers import HfArgumentParser, TrainingArguments

MODEL_KINDS: tuple[str, ...] = ("baseline", "vit", "factorized")
IMBALANCE_METHODS: tuple[str, ...] = ("none", "sampler", "weighted_loss", "focal")
LABEL_NAMES: list[str] = ["labels", "valence", "arousal"]
CONFIG_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")


@dataclass
class ModelArguments:
    """Which network to train and how to initialise it."""

    model_kind: Literal["baseline", "vit", "factorized"] = field(
        default="factorized",
        metadata={"help": "Backbone: `baseline` (ResNet), `vit` or `factorized` (ours)."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Start from pretrained weights: a backbone (Hub id such as "
            "microsoft/resnet-18, or a local folder written by save_pretrained; the head is "
            "re-initialised) or a fer-hf model folder (fine-tuned as is). Default: random "
            "initialisation."
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={"help": "Input size in pixels (square). Default: the model kind's default."},
    )
    valence_arousal: bool = field(
        default=False,
        metadata={
            "help": "Add the valence/arousal head (the data must carry them, e.g. AffectNet)."
        },
    )
    model_overrides: dict | str | None = field(
        default=None,
        metadata={
            "help": "Extra model config values, a mapping in YAML or a JSON string on the command "
            'line, e.g. \'{"factorization": "spatial"}\'.'
        },
    )

    def __post_init__(self):
        if isinstance(self.model_overrides, str):
            try:
                self.model_overrides = json.loads(self.model_overrides)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"`model_overrides` must be a JSON object, got {self.model_overrides!r} "
                    f"({err})."
                ) from None
        if self.model_overrides is not None and not isinstance(self.model_overrides, dict):
            raise TypeError(
                f"`model_overrides` must be a mapping, got {type(self.model_overrides).__name__}."
            )
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"`image_size` must be >= 8 pixels, got {self.image_size}.")


@dataclass
class DataArguments:
    """What to train on and how to augment it."""

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "A `fer-hf prepare` output folder, or (with --source) a raw dataset folder "
            "that is prepared on the fly. Required."
        },
    )
    source: Literal["prepared", "fer2013", "affectnet", "folder"] = field(
        default="prepared",
        metadata={"help": "`prepared` (a `fer-hf prepare` folder) or a raw source kind."},
    )
    num_classes: int | None = field(
        default=None,
        metadata={
            "help": "7 or 8 classes. A prepared folder fixes it (a different value is an error); "
            "for a raw source the default is prepare's (8 for AffectNet, 7 otherwise)."
        },
    )
    resample: Literal["none", "oversample", "undersample", "sqrt"] | None = field(
        default=None,
        metadata={
            "help": "Resample the train split at load time (index selection, seeded by --seed). "
            "Default: keep a prepared split as it is; a raw source is prepared with `oversample`."
        },
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str = field(
        default="validation", metadata={"help": "Split evaluated during training (best model)."}
    )
    test_split: str | None = field(
        default="test",
        metadata={"help": "Split evaluated once after training when it exists; '' to skip."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N records only (quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on the first N records only (quick runs)."}
    )
    augment: bool = field(
        default=True, metadata={"help": "On-the-fly augmentation of the train split."}
    )
    data_pipeline: Literal["decoded", "per_sample"] = field(
        default="decoded",
        metadata={
            "help": "`decoded` (default): faces decoded once into a memory-mapped uint8 cache "
            "beside the prepared splits (`<dataset>/decoded/`), batches augmented as a whole on "
            "the model's device. `per_sample`: decode and augment each image in the data loader "
            "(the reference path of bench/train_throughput.py)."
        },
    )
    crop_size: int | None = field(
        default=None,
        metadata={
            "help": "Train on random crop_size x crop_size crops of the model-sized face (no "
            "resizing; the FER2013 literature's 40-44 px crops of 48 px faces) instead of "
            "random resized crops; evaluation sees the whole face (or `fer-hf evaluate --tta "
            "tencrop`). CNN kinds only; needs --data_pipeline decoded."
        },
    )
    crop_scale: list[float] = field(
        default_factory=lambda: [0.8, 1.0],
        metadata={"help": "Random resized crop: range of the crop's area fraction."},
    )
    crop_ratio: list[float] = field(
        default_factory=lambda: [0.9, 1.1],
        metadata={"help": "Random resized crop: range of the crop's aspect ratio (w / h)."},
    )
    hflip_prob: float = field(default=0.5, metadata={"help": "Horizontal flip probability."})
    rotation_degrees: float = field(
        default=10.0, metadata={"help": "Random rotation in [-d, d] degrees."}
    )
    brightness: float = field(
        default=0.2, metadata={"help": "Brightness jitter: factor in [1 - b, 1 + b]."}
    )
    contrast: float = field(
        default=0.2, metadata={"help": "Contrast jitter: factor in [1 - c, 1 + c]."}
    )
    erasing_prob: float = field(
        default=0.25, metadata={"help": "Random erasing probability (one rectangle, 2-20% area)."}
    )

    def __post_init__(self):
        if not self.dataset:
            raise ValueError(
                "`dataset` is required: pass --dataset PATH (a `fer-hf prepare` folder) or set "
                "`dataset:` in the YAML file."
            )
        if self.num_classes is not None and self.num_classes not in (7, 8):
            raise ValueError(f"`num_classes` must be 7 or 8, got {self.num_classes}.")
        for name in ("crop_scale", "crop_ratio"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1]:
                raise ValueError(f"`{name}` must be two numbers 0 < low <= high, got {low_high!r}.")
        if self.crop_scale[1] > 1:
            raise ValueError(f"`crop_scale` must lie in (0, 1], got {self.crop_scale!r}.")
        for name in ("hflip_prob", "erasing_prob", "brightness", "contrast"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"`{name}` must be in [0, 1], got {getattr(self, name)!r}.")
        if self.crop_size is not None and self.data_pipeline != "decoded":
            raise ValueError("`crop_size` needs `data_pipeline: decoded`.")
        if not 0 <= self.rotation_degrees <= 180:
            raise ValueError(
                f"`rotation_degrees` must be in [0, 180], got {self.rotation_degrees!r}."
            )
        for name in ("max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")


@dataclass
class FerTrainingArguments(TrainingArguments):
    """`TrainingArguments` with this task's defaults plus imbalance and distillation knobs."""

    # Defaults that the task needs: the transforms consume `image`, the loss reads all three
    # targets, and the best checkpoint is the one that treats rare classes fairly.
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Must stay False: the on-the-fly transforms need the `image` column."},
    )
    label_names: list[str] | None = field(
        default_factory=lambda: list(LABEL_NAMES),
        metadata={"help": "Targets the model receives; must be labels, valence, arousal."},
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    logging_steps: float = field(default=50, metadata={"help": "Log every N steps."})
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Keep the best checkpoint (by metric_for_best_model)."}
    )
    metric_for_best_model: str | None = field(
        default="balanced_accuracy", metadata={"help": "Metric that picks the best checkpoint."}
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept on disk (the best one is always kept)."}
    )
    report_to: None | str | list[str] = field(
        default_factory=lambda: ["tensorboard"], metadata={"help": "Loggers (TensorBoard)."}
    )

    imbalance: Literal["none", "sampler", "weighted_loss", "focal"] = field(
        default="none",
        metadata={
            "help": "Class-imbalance handling on top of the data: `none` (use the train split as "
            "prepared, resampled by default), `sampler` (class-balanced sampling), "
            "`weighted_loss` (class-weighted cross-entropy) or `focal` (focal loss)."
        },
    )
    class_weight_method: Literal["inverse", "effective"] = field(
        default="inverse",
        metadata={
            "help": "Class weights for weighted_loss/focal: inverse frequency or effective "
            "number of samples (Cui et al., 2019)."
        },
    )
    focal_gamma: float = field(default=2.0, metadata={"help": "Focal loss focusing parameter."})
    teacher_model: str | None = field(
        default=None,
        metadata={
            "help": "Knowledge distillation: a trained fer-hf model folder used as teacher, or "
            "several folders separated by commas: an ensemble teacher whose probabilities at "
            "the distillation temperature are averaged (each member sees its own preprocessing "
            "and `teacher_tta` views)."
        },
    )
    teacher_tta: Literal["none", "flip"] = field(
        default="none",
        metadata={
            "help": "`flip`: the teacher sees each training crop and its mirror image and its "
            "two logit vectors are averaged, a stronger target (as `fer-hf evaluate --tta "
            "flip`) for one more teacher forward pass per batch."
        },
    )
    distillation_alpha: float = field(
        default=0.5, metadata={"help": "Weight of the distillation (KL) term; 1 - alpha for CE."}
    )
    distillation_temperature: float = field(
        default=4.0, metadata={"help": "Softmax temperature for the distillation term."}
    )
    mixup_alpha: float = field(
        default=0.0,
        metadata={
            "help": "Mixup (Zhang et al. 2018): blend each training batch with itself in "
            "reverse order by a weight lam ~ Beta(a, a); the loss weights each image's label by "
            "lam and its partner's by 1 - lam, and a distillation teacher scores the blend. "
            "0 (default) = off."
        },
    )
    cutmix_alpha: float = field(
        default=0.0,
        metadata={
            "help": "CutMix (Yun et al. 2019): paste one random box of each training image's "
            "partner (the batch in reverse order) into it, lam ~ Beta(a, a) the share kept; "
            "labels weighted by area as for --mixup_alpha. With both set, each batch draws one "
            "of the two with even odds (DeiT: mixup 0.8, cutmix 1.0). 0 (default) = off."
        },
    )
    mix_prob: float = field(
        default=1.0,
        metadata={
            "help": "Probability that a training batch is mixed (--mixup_alpha / "
            "--cutmix_alpha); the others train as they are."
        },
    )
    quantization_aware: bool = field(
        default=False,
        metadata={
            "help": "Quantization-aware fine-tuning (factorized model): every step also runs "
            "the network with ONNX Runtime's static int8 simulated and trains both paths to the "
            "labels and to agree, so `fer-hf export --quantize static` keeps the fp32 "
            "predictions. Start from a trained model (--model_name_or_path) at a low rate."
        },
    )
    qat_consistency_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the symmetric KL term between the fp32 and the simulated int8 "
            "outputs (quantization_aware only)."
        },
    )
    qat_clip_percentile: float | None = field(
        default=None,
        metadata={
            "help": "quantization_aware only: before fine-tuning, bound every activation of the "
            "factorized model at this quantile of its calibration values (e.g. 0.999; turns on "
            "its `clip_activations`). The int8 grids then cover the bounds, not the rare "
            "largest values, and get finer. Default: no clipping."
        },
    )
    qat_calibration_samples: int = field(
        default=128,
        metadata={
            "help": "Training images (no augmentation, seeded) whose min/max ranges set the "
            "simulated activation grids, as the export's 128-image calibration does."
        },
    )
    qat_calibration_steps: int = field(
        default=100,
        metadata={"help": "Re-calibrate the activation ranges every N optimizer steps."},
    )
    precision: Literal["auto", "fp32", "bf16"] = field(
        default="auto",
        metadata={
            "help": "Training precision. `auto` picks per model kind what measured fastest "
            "(bench/train_throughput.py): bf16 autocast for the ResNet and the ViT where the "
            "device computes bf16 natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16 or "
            "AMX), fp32 for the factorized CNN (bf16 slows its depthwise convolutions) and on "
            "every other device (logged). `bf16` / `fp32` force one. `--bf16 true` still works "
            "and means `bf16`. Evaluation always runs in fp32."
        },
    )
    channels_last: Literal["auto", "true", "false"] = field(
        default="auto",
        metadata={
            "help": "Train in the channels-last memory layout: `auto` does for the CNN kinds "
            "(baseline, factorized: faster oneDNN/cuDNN kernels) and not for the ViT."
        },
    )
    sgd_momentum: float = field(default=0.9, metadata={"help": "Momentum of `--optim sgd`."})
    sgd_nesterov: bool = field(
        default=True, metadata={"help": "Nesterov momentum for `--optim sgd`."}
    )

    def teacher_paths(self) -> list[str]:
        """The distillation teacher folders `teacher_model` names (none, one or an ensemble)."""
        if not self.teacher_model:
            return []
        return [path.strip() for path in self.teacher_model.split(",")]

    def mixes(self) -> bool:
        """Whether training batches are mixed (mixup and/or CutMix)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __post_init__(self):
        super().__post_init__()
        if self.remove_unused_columns:
            raise ValueError(
                "`remove_unused_columns` must be False: the on-the-fly transforms read the `image` "
                "column, which the Trainer would drop. Remove the setting."
            )
        if not self.label_names or self.label_names[0] != "labels":
            raise ValueError(
                f"`label_names` must start with 'labels' (default {LABEL_NAMES}), got "
                f"{self.label_names!r}."
            )
        if self.focal_gamma < 0:
            raise ValueError(f"`focal_gamma` must be >= 0, got {self.focal_gamma}.")
        if not 0 <= self.distillation_alpha <= 1:
            raise ValueError(
                f"`distillation_alpha` must be in [0, 1], got {self.distillation_alpha}."
            )
        if not (self.distillation_temperature > 0 and math.isfinite(self.distillation_temperature)):
            raise ValueError(
                f"`distillation_temperature` must be > 0, got {self.distillation_temperature}."
            )
        if not all(self.teacher_paths()):
            raise ValueError(
                f"`teacher_model` {self.teacher_model!r} has an empty entry: give model "
                "folders separated by single commas."
            )
        if self.teacher_tta != "none" and not self.teacher_model:
            raise ValueError(
                f"`teacher_tta={self.teacher_tta}` needs a teacher: set `teacher_model`."
            )
        for name in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value}.")
        if not 0 <= self.mix_prob <= 1:
            raise ValueError(f"`mix_prob` must be in [0, 1], got {self.mix_prob}.")
        if self.mix_prob != 1 and not self.mixes():
            raise ValueError(
                f"`mix_prob={self.mix_prob}` needs `mixup_alpha` or `cutmix_alpha` > 0."
            )
        if not (self.qat_consistency_weight >= 0 and math.isfinite(self.qat_consistency_weight)):
            raise ValueError(
                f"`qat_consistency_weight` must be >= 0, got {self.qat_consistency_weight}."
            )
        if self.qat_clip_percentile is not None:
            if not self.quantization_aware:
                raise ValueError("`qat_clip_percentile` needs `quantization_aware`.")
            if not 0.5 < self.qat_clip_percentile <= 1.0:
                raise ValueError(
                    f"`qat_clip_percentile` must be in (0.5, 1], got {self.qat_clip_percentile}."
                )
        if not 0 <= self.sgd_momentum < 1:
            raise ValueError(f"`sgd_momentum` must be in [0, 1), got {self.sgd_momentum}.")
        for name in ("qat_calibration_samples", "qat_calibration_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")


ARGUMENT_CLASSES = (ModelArguments, DataArguments, FerTrainingArguments)


def build_parser(prog: str | None = None) -> HfArgumentParser:
    return HfArgumentParser(ARGUMENT_CLASSES, prog=prog)


def _read_config(path: Path, prog: str | None = None) -> dict:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    with path.open(encoding="utf-8") as f:
        config = json.load(f) if path.suffix == ".json" else yaml.safe_load(f)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ValueError(
            f"{path}: expected a mapping of argument names to values, got a "
            f"{type(config).__name__}."
        )
    known = {f.name for cls in ARGUMENT_CLASSES for f in fields(cls) if f.init}
    unknown = [key for key in config if key not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"{path}: unknown key(s) {', '.join(hints)}. Every key must be an argument of "
            f"{prog or 'train.py'} (see `{prog or 'python train.py'} --help`); fix or remove it."
        )
    return config


def parse_args(
    argv: Sequence[str] | None = None, prog: str | None = None
) -> tuple[ModelArguments, DataArguments, FerTrainingArguments]:
    """Parse flags, or one YAML/JSON config file followed by optional `--flag value` overrides.

    An unknown key in the file is a `ValueError` naming it (and the closest known key), raised
    before anything is loaded.
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    if argv and not argv[0].startswith("-") and argv[0].endswith(CONFIG_SUFFIXES):
        config = _read_config(Path(argv[0]), prog)
        for action in parser._actions:
            if action.dest in config:
                action.default = config[action.dest]
                action.required = False
        argv = argv[1:]
    model_args, data_args, training_args, extra = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    if extra:
        raise ValueError(
            f"Unknown argument(s) {extra}; see `{prog or 'python train.py'} --help` for the "
            "accepted ones."
        )
    return model_args, data_args, training_args
