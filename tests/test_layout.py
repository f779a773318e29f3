"""The package's layout: one concept per module, small modules, an installable tree, a current module map."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cxr_helpers"
MAX_LINES = 400
# Pure data (phrase banks, vocabularies) may be longer: listed by path, each with why.
DATA_MODULES = {
    "phantom/phrases.py": "the phantom's report phrase banks",
    "labeler/vocabulary.py": "the labeler's mention phrases per label",
}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_grows_past_the_size_limit():
    too_long = {}
    for path in modules():
        name = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and name not in DATA_MODULES:
            too_long[name] = lines
    assert not too_long, f"modules over {MAX_LINES} lines (split them by concept): {too_long}"


def test_every_subpackage_is_a_package_and_is_installed():
    folders = {p.parent for p in modules()}
    assert all((folder / "__init__.py").exists() for folder in folders), "a folder of modules lacks __init__.py"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'include = ["cxr_helpers*"]' in pyproject, "pyproject must install the subpackages too"


def test_no_flat_module_shadows_a_subpackage():
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        assert not (PACKAGE / f"{folder.name}.py").exists(), f"{folder.name}.py and {folder.name}/ both exist"


def test_imports_sit_at_the_top_unless_deferred_on_purpose():
    """Function-level imports only defer heavy optional packages; the CLI defers each command's modules."""
    heavy = r"shap|transformers|google\.colab|nbclient|nbformat|traitlets|huggingface_hub"
    hidden = []
    for path in modules():
        allowed = heavy + (r"|cxr_helpers(\..*)?|pandas" if path.name == "cli.py" else "")
        deferred = re.compile(rf"^({allowed})(\..*)?$")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and not deferred.match(inner.module or ""):
                        hidden.append(f"{path.relative_to(ROOT)}:{inner.lineno} from {inner.module}")
                    elif isinstance(inner, ast.Import) and not all(deferred.match(a.name) for a in inner.names):
                        hidden.append(f"{path.relative_to(ROOT)}:{inner.lineno} import {inner.names[0].name}")
    assert not hidden, "imports hidden inside functions:\n" + "\n".join(hidden)


def test_design_doc_module_map_is_generated_from_the_tree():
    spec = importlib.util.spec_from_file_location("module_map", ROOT / "docs" / "module_map.py")
    module_map = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module_map)
    text = (ROOT / "docs" / "design.md").read_text()
    assert module_map.module_map() in text, "docs/design.md's module map is stale: run python docs/module_map.py"
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", text, re.M))
    assert listed == {p.relative_to(PACKAGE).as_posix() for p in modules()}
