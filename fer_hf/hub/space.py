"""Assemble the Gradio Space repository (app, requirements, README header, bundled fer_hf).

Copies files and renders the Spaces YAML header with huggingface_hub; never imports the cli,
gradio or space/ itself (the Space folder is data here).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, metadata, version
from pathlib import Path
from typing import Any

from huggingface_hub import SpaceCard, SpaceCardData

from .publish import empty_output_dir, upload_folder

TEMPLATE = Path(__file__).resolve().parent / "templates" / "space_readme.md"
REQUIRED_SPACE_FILES = ("app.py", "requirements.txt")
# Never published from the Space folder: caches, local state, tests.
IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".*", "flagged", "tests", "test-artifacts", "README.md"
)
_MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _package_dir() -> Path:
    return Path(__file__).resolve().parents[1]


def _package_license() -> str | None:
    """The fer-hf code licence from the installed metadata (the Space is fer-hf code)."""
    try:
        return (metadata("fer-hf").get("License") or "").lower() or None
    except PackageNotFoundError:
        return None


def _space_card(space_dir: Path, repo_id: str, models: Sequence[str]) -> SpaceCard:
    """space/README.md with its header's `models` set to `models`; a header made from the
    installed gradio when the folder has no README.md."""
    readme = space_dir / "README.md"
    if readme.is_file():
        card = SpaceCard.load(readme)
        if card.data.get("sdk") != "gradio":
            raise ValueError(
                f"{readme} declares sdk {card.data.get('sdk')!r}; the fer-hf Space is a "
                "`gradio` app. Fix its YAML header."
            )
    else:
        try:
            sdk_version = version("gradio")
        except PackageNotFoundError as err:
            raise FileNotFoundError(
                f"{space_dir} has no README.md and gradio is not installed, so the Space's "
                "`sdk_version` is unknown; add space/README.md with a Spaces YAML header."
            ) from err
        data = SpaceCardData(
            title=repo_id.split("/")[-1],
            sdk="gradio",
            sdk_version=sdk_version,
            app_file="app.py",
            python_version="3.11",
            license=_package_license(),
            models=list(models) or None,
        )
        card = SpaceCard.from_template(data, template_path=str(TEMPLATE), repo_id=repo_id)
    if models:
        card.data.models = list(models)
    if not card.data.get("models"):
        # On a Space the app serves the Hub ids under `models:`; without any it has nothing.
        raise ValueError(
            "The Space would serve no model: pass Hub model ids with --models (e.g. "
            f"{repo_id.split('/')[0]}/fer2013-factorized) or list them under `models:` in "
            f"{space_dir / 'README.md'}."
        )
    card.data.tags = sorted({*(card.data.get("tags") or []), "fer-hf"})
    return card


def assemble_space_repo(
    space_dir: str | Path,
    output: str | Path,
    *,
    repo_id: str,
    models: Sequence[str] = (),
    package_dir: str | Path | None = None,
) -> Path:
    """Write the Space repository for `space_dir` into the new (or empty) folder `output`.

    Holds the Space folder's files (app.py, requirements.txt, assets; no caches or tests), its
    README.md with the Spaces YAML header listing `models` (Hub model ids), and a copy of the
    `fer_hf` package so `import fer_hf` works on the Space exactly as tested here.
    """
    space_dir = Path(space_dir)
    missing = [name for name in REQUIRED_SPACE_FILES if not (space_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Space folder {space_dir} lacks {missing}; pass the folder holding the Gradio app "
            "(default: space/)."
        )
    bad = [m for m in models if not _MODEL_ID.fullmatch(m)]
    if bad:
        raise ValueError(f"--models must be Hub model ids like 'owner/name', got {bad}.")
    card = _space_card(space_dir, repo_id, models)
    app_file = card.data.get("app_file") or "app.py"
    if not (space_dir / app_file).is_file():
        raise FileNotFoundError(f"{space_dir}/README.md names app_file {app_file!r}, not found.")
    output = empty_output_dir(Path(output))
    shutil.copytree(space_dir, output, ignore=IGNORED, dirs_exist_ok=True)
    package = Path(package_dir) if package_dir is not None else _package_dir()
    shutil.copytree(
        package, output / "fer_hf", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    card.save(output / "README.md")
    return output


def publish_space(
    space_dir: str | Path,
    repo_id: str,
    *,
    models: Sequence[str] = (),
    private: bool = False,
    dry_run: str | Path | None = None,
    api: Any | None = None,
) -> str:
    """Assemble the Space and upload it as `repo_id` in one commit (or only write it to
    `dry_run`). Returns the commit URL, or the dry-run folder."""
    if dry_run is not None:
        return str(assemble_space_repo(space_dir, dry_run, repo_id=repo_id, models=models))
    with tempfile.TemporaryDirectory(prefix="fer-hf-space-") as tmp:
        folder = assemble_space_repo(space_dir, Path(tmp) / "space", repo_id=repo_id, models=models)
        return upload_folder(
            folder,
            repo_id,
            repo_type="space",
            private=private,
            api=api,
            commit_message="Publish the fer-hf Space",
            create_kwargs={"space_sdk": "gradio"},
        )
