"""Argument dataclasses: flags, one YAML file plus overrides, clear errors, every shipped config."""

from pathlib import Path

import pytest

from fer_hf.training.arguments import _read_config, parse_args

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_flags_and_task_defaults(tmp_path):
    model_args, data_args, args = parse_args(
        ["--dataset", "data", "--output_dir", str(tmp_path), "--model_kind", "baseline"]
    )
    assert model_args.model_kind == "baseline" and data_args.dataset == "data"
    assert args.label_names == ["labels", "valence", "arousal"]
    assert args.remove_unused_columns is False
    assert args.metric_for_best_model == "balanced_accuracy" and args.greater_is_better is True
    assert args.load_best_model_at_end is True
    assert args.report_to == ["tensorboard"]
    assert args.imbalance == "none"


def test_yaml_then_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "dataset: prepared/x\n"
        f"output_dir: {tmp_path / 'out'}\n"
        "model_overrides: {factorization: spatial}\n"
        "crop_scale: [0.5, 1.0]\n"
        "num_train_epochs: 2\n"
        "imbalance: focal\n"
    )
    model_args, data_args, args = parse_args(
        [str(config), "--num_train_epochs", "5", "--valence_arousal", "--resample", "sqrt"]
    )
    assert model_args.model_overrides == {"factorization": "spatial"}
    assert data_args.crop_scale == [0.5, 1.0] and data_args.resample == "sqrt"
    assert args.num_train_epochs == 5  # the flag wins over the file
    assert args.imbalance == "focal" and model_args.valence_arousal is True


def test_unknown_yaml_key_is_named_with_a_suggestion(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("dataset: x\nlerning_rate: 0.1\n")
    with pytest.raises(
        ValueError, match=r"unknown key\(s\) 'lerning_rate' \(did you mean 'learning_rate'\?\)"
    ):
        parse_args([str(config)])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output_dir", "o"], "`dataset` is required"),
        (
            ["--dataset", "d", "--output_dir", "o", "--remove_unused_columns", "true"],
            "`remove_unused_columns` must be False",
        ),
        (
            ["--dataset", "d", "--output_dir", "o", "--crop_scale", "0.9", "0.5"],
            r"`crop_scale` must be two numbers 0 < low <= high, got \[0.9, 0.5\]",
        ),
        (
            ["--dataset", "d", "--output_dir", "o", "--distillation_alpha", "1.5"],
            r"`distillation_alpha` must be in \[0, 1\], got 1.5",
        ),
        (
            ["--dataset", "d", "--output_dir", "o", "--qat_consistency_weight", "-1"],
            r"`qat_consistency_weight` must be >= 0, got -1.0",
        ),
        (
            ["--dataset", "d", "--output_dir", "o", "--qat_clip_percentile", "0.99"],
            "`qat_clip_percentile` needs `quantization_aware`",
        ),
        (
            ["--dataset", "d", "--output_dir", "o", "--qat_calibration_steps", "0"],
            r"`qat_calibration_steps` must be >= 1, got 0",
        ),
        (
            ["--dataset", "d", "--output_dir", "o", "--model_overrides", "{bad"],
            "`model_overrides` must be a JSON object",
        ),
        (
            ["--dataset", "d", "--output_dir", "o", "--no_such_flag", "1"],
            r"Unknown argument\(s\) \['--no_such_flag', '1'\]",
        ),
    ],
)
def test_bad_values_fail_with_the_value(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_args(argv)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_args([str(tmp_path / "nope.yaml")])


def test_config_set_is_complete():
    names = {path.stem for path in CONFIGS}
    for kind in ("baseline", "vit", "factorized"):
        for data in ("fer2013", "affectnet7", "affectnet8"):
            for device in ("cpu", "gpu"):
                assert f"{kind}_{data}_{device}" in names


@pytest.fixture(scope="module")
def defaults(tmp_path_factory):
    parsed = parse_args(["--dataset", "x", "--output_dir", str(tmp_path_factory.mktemp("out"))])
    return {k: v for args in parsed for k, v in vars(args).items()}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_parses_and_is_commented(path, defaults):
    config = _read_config(path)  # no unknown keys
    # Every non-default value carries a comment saying why.
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key = line.split(":", 1)[0]
            if config[key] != defaults[key]:
                assert " # " in line, f"{path.name}: {line!r} has no comment"
    # bf16 needs a GPU; everything else must validate here.
    overrides = ["--bf16", "false"] if config.get("bf16") else []
    model_args, data_args, args = parse_args([str(path), *overrides])
    device = "gpu" if path.stem.endswith("_gpu") else "cpu"  # e.g. factorized_fer2013_qat: CPU
    assert args.use_cpu is (device == "cpu")
    if "affectnet" in path.stem:
        assert model_args.valence_arousal and data_args.num_classes == int(
            path.stem.split("_")[1][-1]
        )
    if device == "gpu" and model_args.model_kind in ("baseline", "vit"):
        assert model_args.model_name_or_path in (
            "microsoft/resnet-18",
            "google/vit-base-patch16-224-in21k",
        )


def test_fer_hf_train_takes_the_same_arguments(tmp_path, capsys):
    from fer_hf.cli import main

    config = tmp_path / "typo.yaml"
    config.write_text("dataset: x\nnum_train_epoch: 3\n")
    assert main(["train", str(config)]) == 2
    assert "unknown key(s) 'num_train_epoch' (did you mean 'num_train_epochs'?)" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "--imbalance {none,sampler,weighted_loss,focal}" in capsys.readouterr().out
