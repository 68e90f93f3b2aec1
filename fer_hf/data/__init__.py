"""The data layer: raw AffectNet / FER2013 / class folders -> `datasets.DatasetDict` (one schema).

Imports only `fer_hf.labels` (never models, training, export, hub or inference).
"""

from .folders import load_class_folders
from .prepare import build_dataset, format_class_table, load_prepared, load_source, prepare
from .records import prepared_features
from .splits import class_counts, class_weights, resample_indices, stratified_split

__all__ = [
    "build_dataset",
    "class_counts",
    "class_weights",
    "format_class_table",
    "load_class_folders",
    "load_prepared",
    "load_source",
    "prepare",
    "prepared_features",
    "resample_indices",
    "stratified_split",
]
