"""The data layer: raw AffectNet / FER2013 / class folders -> `datasets.DatasetDict` (one schema).

Imports only `fer_hf.labels` and `fer_hf.artifacts` (never models, training, export, hub or
inference).
"""

from .folders import load_class_folders
from .prepare import build_dataset, format_class_table, load_prepared, load_source, prepare
from .records import prepared_features
from .samples import Sample, canonical_split, image_source, load_eval_split, load_sample
from .splits import class_counts, class_weights, resample_indices, stratified_split

__all__ = [
    "Sample",
    "build_dataset",
    "canonical_split",
    "class_counts",
    "class_weights",
    "format_class_table",
    "image_source",
    "load_class_folders",
    "load_eval_split",
    "load_prepared",
    "load_sample",
    "load_source",
    "prepare",
    "prepared_features",
    "resample_indices",
    "stratified_split",
]
