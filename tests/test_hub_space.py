"""Assembling and uploading the Gradio Space (a fixture Space folder; never the network)."""

from importlib.metadata import version
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard

from fer_hf.cli import main
from fer_hf.hub import assemble_space_repo, publish_space

MODELS = ["fer-hf/fer2013-factorized", "fer-hf/fer2013-vit"]
HEADER = """\
---
title: fer-hf demo
emoji: 🙂
sdk: gradio
sdk_version: 5.50.0
app_file: app.py
license: apache-2.0
models:
- someone/old-model
---

# fer-hf demo

Upload a photo.
"""


@pytest.fixture
def space_dir(tmp_path):
    folder = tmp_path / "space"
    (folder / "assets").mkdir(parents=True)
    (folder / "app.py").write_text('import fer_hf\nprint("demo")\n')
    (folder / "requirements.txt").write_text("gradio==5.50.0\n")
    (folder / "README.md").write_text(HEADER)
    (folder / "assets" / "note.txt").write_text("kept")
    for junk in ("__pycache__/app.cpython-311.pyc", "tests/test_app.py", "flagged/x.csv"):
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_text("junk")
    return folder


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_space_folder_header_names_its_models(space_dir, tmp_path):
    out = assemble_space_repo(space_dir, tmp_path / "out", repo_id="fer-hf/demo", models=MODELS)
    card = SpaceCard.load(out / "README.md")
    assert card.data.models == MODELS
    assert (card.data.sdk, card.data.app_file, card.data.title) == (
        "gradio",
        "app.py",
        "fer-hf demo",
    )
    assert "fer-hf" in card.data.tags and "Upload a photo." in card.text
    files = _files(out)
    assert {"app.py", "requirements.txt", "README.md", "assets/note.txt"} <= files
    assert {"fer_hf/__init__.py", "fer_hf/hub/templates/model_card.md"} <= files
    assert not any("__pycache__" in f or f.startswith(("tests/", "flagged/")) for f in files)
    assert (space_dir / "README.md").read_text() == HEADER  # the source is never modified
    unchanged = assemble_space_repo(space_dir, tmp_path / "out2", repo_id="fer-hf/demo")
    assert SpaceCard.load(unchanged / "README.md").data.models == ["someone/old-model"]


def test_space_header_made_from_installed_gradio_without_readme(space_dir, tmp_path):
    (space_dir / "README.md").unlink()
    out = assemble_space_repo(space_dir, tmp_path / "out", repo_id="fer-hf/demo", models=MODELS)
    card = SpaceCard.load(out / "README.md")
    assert card.data.sdk_version == version("gradio") and card.data.models == MODELS
    assert (card.data.app_file, card.data.license) == ("app.py", "apache-2.0")
    text = (out / "README.md").read_text()
    assert "[`fer-hf/fer2013-vit`](https://huggingface.co/fer-hf/fer2013-vit)" in text
    assert "[More Information Needed]" not in text


def test_space_input_is_checked(space_dir, tmp_path):
    with pytest.raises(ValueError, match=r"Hub model ids like 'owner/name', got \['vit'\]"):
        assemble_space_repo(space_dir, tmp_path / "a", repo_id="o/s", models=["vit"])
    (space_dir / "README.md").write_text(HEADER.replace("models:\n- someone/old-model\n", ""))
    with pytest.raises(ValueError, match="The Space would serve no model: pass Hub model ids"):
        assemble_space_repo(space_dir, tmp_path / "d", repo_id="o/s")
    kept = assemble_space_repo(space_dir, tmp_path / "e", repo_id="o/s", models=MODELS)
    assert SpaceCard.load(kept / "README.md").data.models == MODELS
    (space_dir / "README.md").write_text(HEADER.replace("sdk: gradio", "sdk: docker"))
    with pytest.raises(ValueError, match="declares sdk 'docker'"):
        assemble_space_repo(space_dir, tmp_path / "b", repo_id="o/s")
    (space_dir / "app.py").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks \['app.py'\]"):
        assemble_space_repo(space_dir, tmp_path / "c", repo_id="o/s")


def test_space_upload_reached_with_the_right_arguments(space_dir):
    calls = []

    class RecordingHfApi:
        def whoami(self):
            return {"name": "tester"}

        def create_repo(self, **kwargs):
            calls.append(("create_repo", kwargs))

        def upload_folder(self, **kwargs):
            readme = Path(kwargs["folder_path"]) / "README.md"
            calls.append(
                ("upload_folder", {**kwargs, "models": SpaceCard.load(readme).data.models})
            )
            return type("CommitInfo", (), {"commit_url": "https://hub.invalid/c2"})

    assert publish_space(space_dir, "o/s", models=MODELS, api=RecordingHfApi()).endswith("/c2")
    assert calls[0] == (
        "create_repo",
        {
            "repo_id": "o/s",
            "repo_type": "space",
            "private": False,
            "exist_ok": True,
            "space_sdk": "gradio",
        },
    )
    upload = calls[1][1]
    assert (upload["repo_type"], upload["models"], upload["delete_patterns"]) == (
        "space",
        MODELS,
        "*",
    )


def test_cli_publish_space_dry_run(space_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["publish-space", "--repo-id", "o/s", "--models", *MODELS]
    assert main([*args, "--space-dir", str(space_dir), "--dry-run", str(out)]) == 0
    assert f"Wrote {out}" in capsys.readouterr().out
    assert SpaceCard.load(out / "README.md").data.models == MODELS
    assert main([*args, "--space-dir", str(space_dir), "--dry-run", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err


def test_real_space_folder_assembles(tmp_path):
    space = Path(__file__).resolve().parents[1] / "space"
    if not all((space / name).is_file() for name in ("app.py", "requirements.txt", "README.md")):
        pytest.skip("space/ is not complete yet (the Space issue): app, requirements, README")
    out = assemble_space_repo(space, tmp_path / "out", repo_id="fer-hf/demo", models=MODELS)
    card = SpaceCard.load(out / "README.md")
    assert card.data.sdk == "gradio" and card.data.models == MODELS
    assert (space / "app.py").read_text() == (out / "app.py").read_text()
