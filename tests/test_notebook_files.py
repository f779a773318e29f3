"""Committed notebooks: stripped of outputs, paired with a py:percent twin that matches cell for cell."""

import json
from pathlib import Path

import jupytext
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_or_widget_state(path):
    notebook = json.loads(path.read_text())
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {index} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {index} has an execution count"
    assert "widgets" not in notebook.get("metadata", {}), f"{path.name} stores widget state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_twin_matches_notebook(path):
    twin = path.with_suffix(".py")
    assert twin.exists(), f"{path.name} has no py:percent twin {twin.name}"
    cells = [(c.cell_type, c.source.strip()) for c in jupytext.read(path).cells]
    twin_cells = [(c.cell_type, c.source.strip()) for c in jupytext.read(twin).cells]
    assert len(cells) == len(twin_cells), f"{path.name}: {len(cells)} cells, {twin.name}: {len(twin_cells)}"
    for index, (cell, twin_cell) in enumerate(zip(cells, twin_cells, strict=True)):
        assert cell == twin_cell, f"{path.name} and {twin.name} differ at cell {index}"


SKELETON = ("Learning objectives", "Reads", "Setup", "Your turn", "Summary", "Questions", "Next")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_same_skeleton_in_every_notebook(path):
    markdown = "\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "markdown")
    missing = [heading for heading in SKELETON if heading.lower() not in markdown.lower()]
    assert not missing, f"{path.name} lacks skeleton parts: {missing}"
    first_code = next(c.source for c in jupytext.read(path).cells if c.cell_type == "code")
    assert "setup_notebook(" in first_code, f"{path.name}: the first code cell must call setup_notebook()"
