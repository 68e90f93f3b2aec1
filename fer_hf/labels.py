"""The canonical expression schema and every source's raw-code map.

Imports nothing (not even from fer_hf), so any layer may depend on it.
"""

# Canonical order = AffectNet's expression codes 0-7. The 7-class variant drops contempt.
EXPRESSIONS_8: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)
EXPRESSIONS_7: tuple[str, ...] = EXPRESSIONS_8[:7]
SUPPORTED_NUM_CLASSES: tuple[int, ...] = (7, 8)

# FER2013 `emotion` (Kaggle CSV): 0=Angry 1=Disgust 2=Fear 3=Happy 4=Sad 5=Surprise 6=Neutral.
FER2013_CODES: dict[int, str] = {
    0: "anger",
    1: "disgust",
    2: "fear",
    3: "happy",
    4: "sad",
    5: "surprise",
    6: "neutral",
}

# AffectNet's `expression` column / `_exp.npy` values.
AFFECTNET_CODES: dict[int, str] = dict(enumerate(EXPRESSIONS_8))
# Codes that are not expressions: rows carrying them are excluded (and counted) by the loaders.
AFFECTNET_NON_EXPRESSION: dict[int, str] = {8: "none", 9: "uncertain", 10: "no-face"}
# AffectNet marks "not applicable" valence/arousal with -2.
AFFECTNET_VA_NOT_APPLICABLE: float = -2.0

# Folder / CSV names seen in the wild -> canonical name. Keys are normalised (see `normalise_name`).
SYNONYMS: dict[str, str] = {
    "neutral": "neutral",
    "neutrality": "neutral",
    "calm": "neutral",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "smile": "happy",
    "sad": "sad",
    "sadness": "sad",
    "unhappy": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "disgust": "disgust",
    "disgusted": "disgust",
    "anger": "anger",
    "angry": "anger",
    "contempt": "contempt",
    "contemptuous": "contempt",
}


def normalise_name(name: str) -> str:
    """Lower case, letters only: how folder, CSV and split names are matched."""
    return "".join(ch for ch in name.strip().lower() if ch.isalpha())


def class_names(num_classes: int) -> tuple[str, ...]:
    """Canonical label names, in index order, for the 7- or 8-class schema."""
    if num_classes == 8:
        return EXPRESSIONS_8
    if num_classes == 7:
        return EXPRESSIONS_7
    raise ValueError(f"`num_classes` must be one of {SUPPORTED_NUM_CLASSES}, got {num_classes!r}.")


def id2label(num_classes: int) -> dict[int, str]:
    return dict(enumerate(class_names(num_classes)))


def label2id(num_classes: int) -> dict[str, int]:
    return {name: i for i, name in enumerate(class_names(num_classes))}


def canonical_name(name: str) -> str | None:
    """Map a folder/CSV/label name ("Angry", "happiness", "6 - Neutral") to the schema, or None."""
    if not isinstance(name, str):
        raise TypeError(f"label name must be a str, got {type(name).__name__}.")
    return SYNONYMS.get(normalise_name(name))


def index_of(name: str, num_classes: int) -> int | None:
    """Index of `name` (any synonym) in the `num_classes` schema; None if unknown or not in it."""
    canonical = canonical_name(name)
    names = class_names(num_classes)
    return names.index(canonical) if canonical in names else None
