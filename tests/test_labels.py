import pytest

from fer_hf import labels


def test_canonical_order_is_affectnet():
    assert labels.class_names(8) == (
        "neutral",
        "happy",
        "sad",
        "surprise",
        "fear",
        "disgust",
        "anger",
        "contempt",
    )
    assert labels.class_names(7) == labels.class_names(8)[:7]
    assert "contempt" not in labels.class_names(7)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Angry", "anger"),
        ("anger", "anger"),
        ("happiness", "happy"),
        ("Sadness", "sad"),
        ("surprised", "surprise"),
        ("Fearful", "fear"),
        ("disgusted", "disgust"),
        ("  Neutral ", "neutral"),
        ("6 - Neutral", "neutral"),
        ("Contempt", "contempt"),
        ("bored", None),
    ],
)
def test_synonyms(raw, expected):
    assert labels.canonical_name(raw) == expected


def test_fer2013_codes_map_into_the_7_class_schema():
    names = [labels.FER2013_CODES[c] for c in range(7)]
    assert names == ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert sorted(labels.index_of(n, 7) for n in names) == list(range(7))


def test_affectnet_codes():
    assert labels.AFFECTNET_CODES[0] == "neutral" and labels.AFFECTNET_CODES[7] == "contempt"
    assert set(labels.AFFECTNET_NON_EXPRESSION) == {8, 9, 10}


def test_id_maps_round_trip():
    for n in (7, 8):
        i2l, l2i = labels.id2label(n), labels.label2id(n)
        assert all(l2i[i2l[i]] == i for i in range(n))
    assert labels.index_of("contempt", 7) is None


def test_bad_num_classes_message():
    with pytest.raises(ValueError, match=r"`num_classes` must be one of \(7, 8\), got 6"):
        labels.class_names(6)
    with pytest.raises(TypeError, match="must be a str"):
        labels.canonical_name(3)
