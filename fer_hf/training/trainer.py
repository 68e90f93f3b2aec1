"""`FerTrainer`: the HF Trainer plus class-balanced sampling, weighted/focal loss, distillation and
quantization-aware fine-tuning.

Imports fer_hf.models (losses), training siblings; never export, hub or cli.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME

from ..models.modeling_fer import valence_arousal_loss
from .augment import mix_pairs, normalize_uint8
from .evaluation import tta_views
from .losses import (
    ClassBalancedSampler,
    distillation_loss,
    ensemble_teacher_logits,
    focal_loss,
    symmetric_kl,
)
from .transforms import convert_pixel_values

_PROCESSOR_FIELDS = (
    "size",
    "do_grayscale",
    "num_channels",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
)


class FerTrainer(Trainer):
    """A `Trainer` whose training loss follows `FerTrainingArguments`.

    - `imbalance="sampler"`: batches drawn by `ClassBalancedSampler` from `train_labels`.
    - `imbalance="weighted_loss"` / `"focal"`: cross-entropy weighted by `class_weights` / focal
      loss (weighted too when `class_weights` is given).
    - `mixup_alpha` / `cutmix_alpha`: a training batch (with probability `mix_prob`) is mixed
      with itself reversed (`mix_pairs`); every loss term below is the `lam`-weighted sum of the
      term for the images' own targets and for their partners' (valence/arousal targets are
      blended linearly, unknown when either is), and a teacher scores the mixed images, so the
      student matches the teacher's function on them (Beyer et al., CVPR 2022).
    - `teacher`: loss = alpha * KL(teacher || student at temperature T) * T^2 + (1 - alpha) * CE.
      A list of teachers (with a list of processors and of bf16 flags) is an ensemble whose
      softened probabilities are averaged (`ensemble_teacher_logits`).
    - `quantization_aware`: each step also runs the model with int8 simulated
      (`QuantizationSimulator`, calibrated on `quantization_calibration` every
      `qat_calibration_steps` steps); loss = mean of the two paths' losses above +
      `qat_consistency_weight` * symmetric KL between them. Logs `qat_agreement`, the share of
      training images whose simulated int8 top-1 matches the fp32 one.
    Otherwise, and always for evaluation, the loss is the model's own (CE + valence/arousal), so
    eval losses compare across runs. These arguments own the training loss: a model whose config
    sets `label_smoothing` or `class_weights` (FerConfig's standalone loss) is refused.
    Checkpoints hold no pickles: `training_args.bin` is replaced by `training_args.json`.
    """

    def __init__(
        self,
        *args,
        train_labels: np.ndarray | None = None,
        class_weights: np.ndarray | None = None,
        teacher: torch.nn.Module | Sequence[torch.nn.Module] | None = None,
        teacher_processor=None,
        quantization_calibration: torch.Tensor | None = None,
        train_bf16: bool = False,
        augmenter=None,
        eval_collator=None,
        channels_last: bool = False,
        teacher_bf16: bool | Sequence[bool] = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        config = getattr(self.model, "config", None)
        if getattr(config, "label_smoothing", 0.0) or getattr(config, "class_weights", None):
            # One owner per setting: FerConfig's loss fields serve the model's own loss outside
            # the Trainer; in training they would be used or silently ignored depending on
            # whether this Trainer computes the loss itself.
            raise ValueError(
                f"The model's config sets its own loss (label_smoothing="
                f"{config.label_smoothing}, class_weights={config.class_weights}); training's "
                "loss settings are the Trainer's: use --label_smoothing_factor and --imbalance "
                "weighted_loss|focal, and leave them out of --model_overrides."
            )
        self.train_bf16 = train_bf16
        self.augmenter = augmenter
        self.eval_collator = eval_collator
        self.channels_last = channels_last
        if self.args.imbalance == "sampler" and train_labels is None:
            raise ValueError("imbalance='sampler' needs `train_labels` (the train split's labels).")
        self.train_labels = train_labels
        self.class_weights = (
            torch.as_tensor(class_weights, dtype=torch.float32)
            if class_weights is not None
            else None
        )
        self.teachers = self._teacher_members(teacher, teacher_processor, teacher_bf16)
        self.simulator = None
        if self.args.quantization_aware:
            from .quantization_aware import QuantizationSimulator

            if quantization_calibration is None or len(quantization_calibration) == 0:
                raise ValueError(
                    "quantization_aware needs `quantization_calibration` (preprocessed images)."
                )
            self.simulator = QuantizationSimulator(self.model)
            self.quantization_calibration = quantization_calibration
            self._calibrated_at: int | None = None
            self._agreement = [0, 0]  # matches, images since the last log

    def _get_train_sampler(self, train_dataset=None):
        if self.args.imbalance == "sampler":
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return ClassBalancedSampler(self.train_labels, seed=seed)
        return super()._get_train_sampler(train_dataset)

    def _needs_own_loss(self) -> bool:
        return (
            self.args.imbalance in ("weighted_loss", "focal")
            or bool(self.teachers)
            or self.args.label_smoothing_factor > 0
            or self.simulator is not None
            or self.args.mixes()
        )

    def _get_dataloader(self, dataset, description, *args, **kwargs):
        """Evaluation and prediction batches come from `eval_collator` when one is set."""
        if self.eval_collator is None or kwargs.get("is_training", False):
            return super()._get_dataloader(dataset, description, *args, **kwargs)
        saved, self.data_collator = self.data_collator, self.eval_collator
        try:
            return super()._get_dataloader(dataset, description, *args, **kwargs)
        finally:
            self.data_collator = saved

    def _prepare_inputs(self, inputs):
        """Move the batch to the device; turn a uint8 `images` batch (the decoded data path)
        into `pixel_values` there: augmented in training, the processor's arithmetic otherwise."""
        inputs = super()._prepare_inputs(inputs)
        if "images" in inputs:
            images = inputs.pop("images")
            if self.model.training and self.augmenter is not None:
                inputs["pixel_values"] = self.augmenter(images)
            else:
                inputs["pixel_values"] = normalize_uint8(images, self.processing_class)
        if self.channels_last and "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].contiguous(
                memory_format=torch.channels_last
            )
        return inputs

    @staticmethod
    def get_optimizer_cls_and_kwargs(args, model=None):
        """The Trainer's choice, plus momentum and Nesterov for `--optim sgd`."""
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        if args.optim == "sgd":
            kwargs = {
                **kwargs,
                "momentum": getattr(args, "sgd_momentum", 0.0),
                "nesterov": getattr(args, "sgd_nesterov", False),
            }
        return optimizer_cls, kwargs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The loss of one batch; training steps run under bf16 autocast when `train_bf16`
        (evaluation stays fp32)."""
        enabled = self.train_bf16 and model.training
        with torch.autocast(self.args.device.type, dtype=torch.bfloat16, enabled=enabled):
            return self._compute_loss(model, inputs, return_outputs)

    def _compute_loss(self, model, inputs, return_outputs=False):
        if not (model.training and self._needs_own_loss()):
            outputs = model(**inputs)
            return (outputs.loss, outputs) if return_outputs else outputs.loss

        lam = None
        if self.args.mixes() and float(torch.rand(())) < self.args.mix_prob:
            inputs, lam = self._mixed(inputs)
        teacher_logits = self._ensemble_logits(inputs["pixel_values"]) if self.teachers else None
        outputs = model(pixel_values=inputs["pixel_values"])
        loss = self._task_loss(model, outputs, inputs, teacher_logits, lam)
        if self.simulator is not None:
            self._calibrate_if_due()
            with self.simulator.simulate():
                simulated = model(pixel_values=inputs["pixel_values"])
            simulated_loss = self._task_loss(model, simulated, inputs, teacher_logits, lam)
            consistency = symmetric_kl(outputs.logits, simulated.logits)
            loss = 0.5 * (loss + simulated_loss) + self.args.qat_consistency_weight * consistency
            with torch.no_grad():
                matches = outputs.logits.argmax(-1) == simulated.logits.argmax(-1)
            self._agreement[0] += int(matches.sum())
            self._agreement[1] += matches.numel()
        outputs.loss = loss
        return (loss, outputs) if return_outputs else loss

    def _mixed(self, inputs: dict) -> tuple[dict, float]:
        """A batch mixed by `mix_pairs`, its valence/arousal targets blended by the same `lam`
        (NaN, unknown, where either image's is); `labels` stay the images' own."""
        pixel_values, lam = mix_pairs(
            inputs["pixel_values"], self.args.mixup_alpha, self.args.cutmix_alpha
        )
        mixed = {**inputs, "pixel_values": pixel_values}
        for name in ("valence", "arousal"):
            if inputs.get(name) is not None:
                mixed[name] = lam * inputs[name] + (1 - lam) * inputs[name].flip(0)
        return mixed, lam

    def _label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Weighted / focal / smoothed cross-entropy of float logits against class indices."""
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        smoothing = self.args.label_smoothing_factor
        if self.args.imbalance == "focal":
            return focal_loss(logits, labels, self.args.focal_gamma, weight, smoothing)
        return F.cross_entropy(logits, labels, weight=weight, label_smoothing=smoothing)

    def _task_loss(
        self, model, outputs, inputs, teacher_logits, lam: float | None = None
    ) -> torch.Tensor:
        """Expression loss (weighted/focal/smoothed CE, distillation) + valence/arousal loss;
        for a mixed batch (`lam`), the label term weights each image's label by `lam` and its
        partner's (the batch reversed) by `1 - lam`."""
        labels = inputs["labels"]
        logits = outputs.logits.float()
        loss = self._label_loss(logits, labels)
        if lam is not None:
            loss = lam * loss + (1 - lam) * self._label_loss(logits, labels.flip(0))
        if teacher_logits is not None:
            alpha = self.args.distillation_alpha
            kd = distillation_loss(logits, teacher_logits, self.args.distillation_temperature)
            loss = alpha * kd + (1 - alpha) * loss
        if outputs.valence_arousal is not None:
            loss = loss + self._valence_arousal_loss(model, outputs.valence_arousal, inputs)
        return loss

    def _calibrate_if_due(self) -> None:
        """Re-derive the simulated activation grids from the current weights when due."""
        step = self.state.global_step
        due = self._calibrated_at is None or step - self._calibrated_at >= (
            self.args.qat_calibration_steps
        )
        if due:
            self.simulator.calibrate(self.quantization_calibration)
            self._calibrated_at = step

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if self.simulator is not None and self._agreement[1] and "loss" in logs:
            logs["qat_agreement"] = round(self._agreement[0] / self._agreement[1], 4)
            self._agreement = [0, 0]
        super().log(logs, *args, **kwargs)

    def _teacher_members(self, teacher, processor, bf16) -> list[tuple]:
        """(model, processor, bf16) per teacher; one teacher or parallel lists of them."""
        if teacher is None:
            return []
        if isinstance(teacher, torch.nn.Module):
            teacher, processor, bf16 = [teacher], [processor], [bf16]
        processors = list(processor) if processor is not None else [None] * len(teacher)
        flags = [bf16] * len(teacher) if isinstance(bf16, bool) else list(bf16)
        if not len(teacher) == len(processors) == len(flags):
            raise ValueError(
                f"{len(teacher)} teachers need as many processors and bf16 flags, got "
                f"{len(processors)} and {len(flags)}."
            )
        return [
            (model.to(self.args.device).eval().requires_grad_(False), member_processor, flag)
            for model, member_processor, flag in zip(teacher, processors, flags, strict=True)
        ]

    def _ensemble_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The distillation target for a batch: each teacher's logits on its own view of the
        batch (`_teacher_inputs`), mixed by `ensemble_teacher_logits` when there are several."""
        device = pixel_values.device.type
        member_logits = []
        for teacher, processor, bf16 in self.teachers:
            with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                member_logits.append(
                    self._teacher_logits(teacher, self._teacher_inputs(processor, pixel_values))
                )
        if len(member_logits) == 1:
            return member_logits[0]
        return ensemble_teacher_logits(member_logits, self.args.distillation_temperature)

    def _teacher_logits(self, teacher, pixel_values: torch.Tensor) -> torch.Tensor:
        """A teacher's logits for a batch, averaged over the `teacher_tta` views of it (`flip`:
        the batch and its mirror image), all views in one forward pass."""
        views = tta_views(pixel_values, self.args.teacher_tta)
        logits = teacher(pixel_values=torch.cat(views)).logits.float()
        return logits.view(len(views), pixel_values.shape[0], -1).mean(0)

    def _teacher_inputs(self, teacher_processor, pixel_values: torch.Tensor) -> torch.Tensor:
        student = self.processing_class
        if teacher_processor is None:
            return pixel_values
        takes = (teacher_processor.output_size["height"], teacher_processor.output_size["width"])
        if tuple(pixel_values.shape[-2:]) == takes and all(
            getattr(student, name) == getattr(teacher_processor, name) for name in _PROCESSOR_FIELDS
        ):
            return pixel_values  # already what the teacher takes (its size's random crops too)
        return convert_pixel_values(pixel_values, student, teacher_processor)

    def _valence_arousal_loss(self, model, prediction, inputs) -> torch.Tensor:
        config = self.accelerator.unwrap_model(model).config
        return config.va_loss_weight * valence_arousal_loss(
            prediction, inputs.get("valence"), inputs.get("arousal"), config.va_loss
        )

    def _save(self, output_dir: str | None = None, state_dict=None):
        super()._save(output_dir, state_dict)
        # The Trainer pickles the whole arguments object; keep a readable JSON copy instead.
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        pickled = os.path.join(output_dir, TRAINING_ARGS_NAME)
        if os.path.exists(pickled):
            os.remove(pickled)
        with open(os.path.join(output_dir, "training_args.json"), "w", encoding="utf-8") as f:
            f.write(self.args.to_json_string())


def describe_loss(args) -> dict:
    """The loss settings of a run, for the train summary."""
    described = {"imbalance": args.imbalance, "label_smoothing": args.label_smoothing_factor}
    if args.imbalance in ("weighted_loss", "focal"):
        described["class_weight_method"] = args.class_weight_method
    if args.imbalance == "focal":
        described["focal_gamma"] = args.focal_gamma
    if args.quantization_aware:
        described.update(
            quantization_aware=True,
            qat_consistency_weight=args.qat_consistency_weight,
            qat_calibration_samples=args.qat_calibration_samples,
            qat_calibration_steps=args.qat_calibration_steps,
            qat_clip_percentile=args.qat_clip_percentile,
        )
    if args.mixes():
        described.update(
            mixup_alpha=args.mixup_alpha, cutmix_alpha=args.cutmix_alpha, mix_prob=args.mix_prob
        )
    if args.teacher_model:
        described.update(
            teacher_model=args.teacher_model,
            distillation_alpha=args.distillation_alpha,
            distillation_temperature=args.distillation_temperature,
            teacher_tta=args.teacher_tta,
        )
    return described
