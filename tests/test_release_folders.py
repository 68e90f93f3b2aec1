"""Every release folder in checkpoints/ carries the package's current model code.

A saved folder loads with `trust_remote_code=True` from its own copies of fer_hf/models/*.py
(`auto_map`); a stale copy would build a different model than `fer_hf.models` does. `fer-hf
release` writes fresh copies; `fer_hf.release.refresh_model_code(folder)` refreshes an old one.
"""

from pathlib import Path

import pytest

from fer_hf.hub.publish import code_files

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fer_hf" / "models"
FOLDERS = sorted(
    path.parent
    for pattern in ("checkpoints/*/config.json", "checkpoints/*/onnx/config.json")
    for path in ROOT.glob(pattern)
)


@pytest.mark.skipif(not FOLDERS, reason="no release folders in checkpoints/")
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_release_code_files_equal_the_package(folder):
    needed = code_files(folder)  # every auto_map module and its relative imports is there
    assert needed, f"{folder} names no code files in auto_map"
    stale = [
        name
        for name in sorted({*needed, *(p.name for p in folder.glob("*.py"))})
        if (MODELS / name).is_file()
        and (folder / name).read_bytes() != (MODELS / name).read_bytes()
    ]
    assert not stale, (
        f"{folder.relative_to(ROOT)} holds older copies of fer_hf/models/{stale}; refresh with "
        f'`python -c "from fer_hf.release import refresh_model_code; '
        f"refresh_model_code('{folder.relative_to(ROOT)}')\"`"
    )
