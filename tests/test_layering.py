"""Dependency direction (STYLE.md section 2), read from every module's imports with `ast`."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fer_hf"

# layer -> fer_hf layers it must never import
FORBIDDEN = {
    "labels": {"data", "models", "metrics", "training", "export", "hub", "inference", "cli"},
    "data": {"models", "training", "export", "hub", "inference", "cli"},
    "models": {"data", "training", "export", "hub", "inference", "cli", "metrics"},
    "metrics": {"training", "export", "hub", "inference", "cli"},
    "export": {"data", "training", "hub", "cli"},
    "training": {"export", "hub", "cli"},
    "inference": {"training", "hub", "cli", "data"},
    "hub": {"cli"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imported_layers(path: Path) -> set[str]:
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
        for name in names:
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


def test_model_code_is_self_contained():
    """Saved model folders carry fer_hf/models code (auto_map): relative imports only."""
    for path in sorted((PKG / "models").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level:
                assert not (node.module or "").startswith("fer_hf"), (
                    f"{path.relative_to(ROOT)} imports {node.module}; use a relative import"
                )
