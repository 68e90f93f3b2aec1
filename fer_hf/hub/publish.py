"""Assemble the exact Hub repository for a release (or the Space) and upload it in one commit.

Reads files and calls huggingface_hub's `HfApi`; never imports torch, the models or the cli.
"""

from __future__ import annotations

import ast
import logging
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

from ..artifacts import (
    CONFUSION_PNG,
    ONNX_FILE_NAME,
    ONNX_SUBFOLDER,
    PARITY_FILE,
    read_json,
    write_json,
)
from .model_card import render_model_card
from .release import load_release

logger = logging.getLogger(__name__)

# What a model repository holds, besides README.md: nothing else from the folder (no optimizer
# state, no pickles, no TensorBoard logs) is ever published.
MODEL_FILE_PATTERNS = (
    "config.json",
    "preprocessor_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    CONFUSION_PNG,
)
ONNX_FILE_PATTERNS = ("*.onnx", "*.onnx_data", "config.json", "preprocessor_config.json")
# parity.json keys that name folders on the exporting machine; left out of the published copy.
LOCAL_PATH_KEYS = ("model_dir",)


class PublishError(RuntimeError):
    """The Hub could not be reached or refused the upload; the message is one line for the cli."""


def empty_output_dir(output: Path) -> Path:
    """Create `output`, or accept it when empty; anything already in it is never overwritten."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(
            f"Output folder {output} already exists and is not empty; pass a new or empty folder "
            "(it is never overwritten)."
        )
    output.mkdir(parents=True, exist_ok=True)
    return output


def _copy_matching(src: Path, dst: Path, patterns: Iterable[str]) -> None:
    """Copy the top-level files of `src` matching `patterns` (never subfolders) into `dst`."""
    for pattern in patterns:
        for path in sorted(src.glob(pattern)):
            if path.is_file() and not (dst / path.name).exists():
                shutil.copy2(path, dst / path.name)


def _relative_imports(path: Path) -> set[str]:
    """Sibling modules a code file imports relatively (`from .configuration_x import ...`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # `from . import x`
                found.update(alias.name for alias in node.names)
    return found


def code_files(folder: Path) -> list[str]:
    """The code files a folder's `auto_map` (config and processor) needs, with their relative
    imports, checked to exist. A missing one is a `FileNotFoundError` naming it."""
    pending: list[tuple[str, str]] = []
    for name in ("config.json", "preprocessor_config.json"):
        path = folder / name
        auto_map = read_json(path, "a config").get("auto_map") if path.is_file() else None
        if name == "config.json" and path.is_file() and not auto_map:
            raise ValueError(
                f"{path} has no `auto_map`, so the published model would not load with "
                "`trust_remote_code=True`; save it with fer-hf (register_for_auto_class)."
            )
        for auto_class, reference in (auto_map or {}).items():
            references = reference if isinstance(reference, list) else [reference]
            for ref in filter(None, references):
                module = ref.split("--")[-1].rsplit(".", 1)[0]
                pending.append((module, f"{path}: auto_map[{auto_class!r}] = {ref!r}"))
    needed: list[str] = []
    while pending:
        module, needed_by = pending.pop()
        if f"{module}.py" in needed:
            continue
        path = folder / f"{module}.py"
        if not path.is_file():
            raise FileNotFoundError(
                f"{needed_by} needs {module}.py, which is missing from {folder}; re-save the "
                "model with save_pretrained (fer-hf registers its classes for auto_map)."
            )
        needed.append(path.name)
        pending.extend((m, str(path)) for m in _relative_imports(path))
    return sorted(needed)


def assemble_model_repo(
    model_dir: str | Path,
    output: str | Path,
    *,
    repo_id: str,
    onnx_dir: str | Path | None = None,
    bench_files: Sequence[str | Path] = (),
    license: str | None = None,
) -> Path:
    """Write the exact repository for `model_dir` into the new (or empty) folder `output`.

    Holds: config.json (with `auto_map`) and the model's code files, safetensors weights,
    preprocessor_config.json, the rendered README.md, confusion_matrix.png when present, and
    `onnx/` (the `fer-hf export` folder: model.onnx, model_quantized.onnx, configs, parity.json)
    from `onnx_dir`, or from `model_dir/onnx` when that holds an export. Returns `output`.
    """
    default_onnx = Path(model_dir) / ONNX_SUBFOLDER
    if onnx_dir is None and (default_onnx / ONNX_FILE_NAME).is_file():
        onnx_dir = default_onnx  # a release folder that carries its export
    release = load_release(model_dir, onnx_dir=onnx_dir, bench_files=tuple(bench_files))
    model_code = code_files(release.model_dir)
    onnx_code = code_files(release.onnx_dir) if release.onnx_dir is not None else []
    card = render_model_card(release, repo_id, license=license)
    output = empty_output_dir(Path(output))
    _copy_matching(release.model_dir, output, (*MODEL_FILE_PATTERNS, *model_code))
    if release.onnx_dir is not None:
        onnx_out = output / ONNX_SUBFOLDER
        onnx_out.mkdir()
        _copy_matching(release.onnx_dir, onnx_out, (*ONNX_FILE_PATTERNS, *onnx_code))
        if release.parity is not None:
            parity = {k: v for k, v in release.parity.items() if k not in LOCAL_PATH_KEYS}
            write_json(onnx_out / PARITY_FILE, parity)
    card.save(output / "README.md")
    return output


def upload_folder(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool = False,
    commit_message: str,
    api: Any | None = None,
    create_kwargs: dict[str, Any] | None = None,
) -> str:
    """`create_repo` (if needed) + one `upload_folder` commit that makes the repo equal `folder`.

    Remote files absent from `folder` are deleted in the same commit (`.gitattributes` is kept).
    Hub failures (no token, offline, unreachable, refused) become a one-line `PublishError`.
    Returns the commit URL.
    """
    api = api if api is not None else HfApi()
    try:
        user = api.whoami()
        api.create_repo(
            repo_id=repo_id,
            repo_type=repo_type,
            private=private,
            exist_ok=True,
            **(create_kwargs or {}),
        )
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type=repo_type,
            commit_message=commit_message,
            delete_patterns="*",
        )
    except LocalTokenNotFoundError as err:
        raise PublishError(
            "no Hugging Face token found; run `hf auth login` or set HF_TOKEN "
            "(or pass --dry-run OUT to only write the folder)"
        ) from err
    except OfflineModeIsEnabled as err:
        raise PublishError(
            "HF_HUB_OFFLINE is set, so the Hub cannot be reached; unset it to publish "
            "(or pass --dry-run OUT to only write the folder)"
        ) from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        hint = {
            401: "the token was rejected; run `hf auth login` again",
            403: f"the token cannot write to {repo_id!r}; use a write token for its owner",
        }
        detail = hint.get(status, str(err).splitlines()[0])
        raise PublishError(
            f"the Hub refused the upload to {repo_id!r} (HTTP {status}): {detail}"
        ) from err
    except OSError as err:  # requests' ConnectionError/Timeout are OSErrors
        endpoint = getattr(api, "endpoint", "the Hub")
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PublishError(
            f"cannot reach the Hugging Face Hub at {endpoint} ({first_line}); check the network "
            "or pass --dry-run OUT to only write the folder"
        ) from err
    logger.info("Uploaded %s as %s to %s", folder, user.get("name"), repo_id)
    return str(getattr(info, "commit_url", info))


def publish_model(
    model_dir: str | Path,
    repo_id: str,
    *,
    onnx_dir: str | Path | None = None,
    bench_files: Sequence[str | Path] = (),
    license: str | None = None,
    private: bool = False,
    dry_run: str | Path | None = None,
    api: Any | None = None,
) -> str:
    """Assemble `model_dir`'s repository and upload it as `repo_id` (or, with `dry_run=OUT`, only
    write it to OUT). Returns the commit URL, or OUT for a dry run."""
    kwargs = dict(repo_id=repo_id, onnx_dir=onnx_dir, bench_files=bench_files, license=license)
    if dry_run is not None:
        return str(assemble_model_repo(model_dir, dry_run, **kwargs))
    with tempfile.TemporaryDirectory(prefix="fer-hf-publish-") as tmp:
        folder = assemble_model_repo(model_dir, Path(tmp) / "repo", **kwargs)
        return upload_folder(
            folder,
            repo_id,
            private=private,
            api=api,
            commit_message=f"Publish {Path(model_dir).name} with fer-hf",
        )
