"""Dependency direction (STYLE.md section 2), read from every module's imports with `ast`."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fer_hf"

# layer -> fer_hf layers it must never import
LAYERS = {"artifacts", "imaging", "labels", "data", "models", "metrics", "training", "export"}
LAYERS |= {"hub", "inference", "release", "cli"}
FORBIDDEN = {
    # The ground floor: file names and JSON (artifacts), what image readers share (imaging),
    # the label schema (labels).
    "artifacts": LAYERS - {"artifacts"},
    "imaging": LAYERS - {"imaging"},
    "labels": LAYERS - {"labels"},
    "data": {"models", "training", "export", "hub", "inference", "release", "cli"},
    "models": {"data", "training", "export", "hub", "inference", "release", "cli", "metrics"},
    "metrics": {"training", "export", "hub", "inference", "release", "cli"},
    "export": {"data", "training", "hub", "release", "cli"},
    "training": {"export", "hub", "inference", "release", "cli"},
    "inference": {"training", "hub", "data", "export", "release", "cli"},
    # Cards and publishing only; the release workflow (evaluate, export, card) is fer_hf/release.py
    "hub": {"data", "models", "metrics", "training", "export", "inference", "release", "cli"},
    # The workflow above training, export and hub.
    "release": {"cli"},
}
# Finer edges inside an allowed layer: (importing layer, imported layer) -> modules it may use.
ONLY = {
    # export times and checks ONNX files with the session inference owns.
    ("export", "inference"): {"fer_hf.inference.runtime"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imported_modules(path: Path) -> set[str]:
    """Every module name `path` imports (relative imports resolved to absolute names)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                base = path.relative_to(PKG).parent.parts[
                    : len(path.relative_to(PKG).parent.parts) - (node.level - 1)
                ]
                names = [".".join(("fer_hf", *base, node.module or ""))]
            else:
                names = [node.module or ""]
        else:
            continue
        found.update(name.rstrip(".") for name in names)
    return found


def _imported_layers(path: Path) -> set[str]:
    found = set()
    for name in _imported_modules(path):
        parts = name.split(".")
        if parts[0] in {"train", "space"}:
            found.add(parts[0])
        if parts[0] == "fer_hf" and len(parts) > 1 and parts[1]:
            found.add(parts[1])
    return found


def test_no_upward_imports():
    violations = []
    for path in sorted(PKG.rglob("*.py")):
        layer = _layer(path)
        imported = _imported_layers(path)
        if imported & {"train", "space"}:
            violations.append(f"{path.relative_to(ROOT)} imports train.py/space")
        bad = imported & FORBIDDEN.get(layer, set())
        if bad:
            violations.append(f"{path.relative_to(ROOT)} ({layer}) imports {sorted(bad)}")
    assert not violations, "\n".join(violations)


def test_finer_edges():
    violations = []
    for path in sorted(PKG.rglob("*.py")):
        layer = _layer(path)
        for name in _imported_modules(path):
            parts = name.split(".")
            if parts[0] != "fer_hf" or len(parts) < 2:
                continue
            allowed = ONLY.get((layer, parts[1]))
            if allowed is not None and not any(
                name == a or name.startswith(a + ".") for a in allowed
            ):
                violations.append(f"{path.relative_to(ROOT)} ({layer}) imports {name}")
    assert not violations, "\n".join(violations)


def test_hub_and_ground_floor_never_import_torch():
    """fer_hf.hub (cards, publishing) and fer_hf.artifacts load without torch or transformers."""
    code = (
        "import sys; import fer_hf.artifacts, fer_hf.imaging, fer_hf.labels, fer_hf.hub; "
        "bad = sorted({'torch', 'transformers', 'optimum'} & set(sys.modules)); "
        "print(','.join(bad))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "", f"importing fer_hf.hub imported {done.stdout.strip()}"


def test_model_code_is_self_contained():
    """Saved model folders carry fer_hf/models code (auto_map): relative imports only."""
    for path in sorted((PKG / "models").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level:
                assert not (node.module or "").startswith("fer_hf"), (
                    f"{path.relative_to(ROOT)} imports {node.module}; use a relative import"
                )
