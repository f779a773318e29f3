"""The notebooks' first cell on Colab, with a stand-in ``google.colab`` (Colab itself is not reachable here).

What is checked: the install branch runs only on Colab and only when the workbook is missing,
it installs from the same WORKBOOK_URL in every notebook with pip, naming no torch (and
test_packaging checks that every requirement is a lower bound, so Colab's torch stays); then
``setup_notebook`` enables Colab's widget manager and, with CXR_USE_DRIVE=1, puts the artifacts
on the mounted Drive. Whether the install works on Colab itself was never run.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from cxr_helpers import notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.py"))


def first_code_cell(path: Path) -> str:
    """The source of a py:percent notebook's first code cell."""
    parts = re.split(r"^(# %%.*)$", path.read_text(), flags=re.MULTILINE)  # preamble, header, body, header, ...
    return next(body for header, body in zip(parts[1::2], parts[2::2], strict=True) if "[markdown]" not in header)


@pytest.fixture
def colab(monkeypatch, tmp_path) -> dict:
    """A stand-in google.colab: records the widget-manager switch and Drive mounts (into tmp_path)."""
    calls = {"widget_manager": 0, "mounts": []}

    def enable_custom_widget_manager():
        calls["widget_manager"] += 1

    def mount(point):
        calls["mounts"].append(point)
        Path(point, "MyDrive").mkdir(parents=True, exist_ok=True)

    module = types.ModuleType("google.colab")
    module.output = types.SimpleNamespace(enable_custom_widget_manager=enable_custom_widget_manager)
    module.drive = types.SimpleNamespace(mount=mount)
    monkeypatch.setitem(sys.modules, "google.colab", module)
    monkeypatch.setattr(notebook, "DRIVE_MOUNT_POINT", str(tmp_path / "drive"))
    return calls


@pytest.fixture
def installs(monkeypatch) -> list:
    """The pip commands the cell runs (recorded, not run), in a runtime where the workbook is not installed."""
    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append(command))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cxr_helpers" else real_find_spec(name, *a))
    return commands


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_on_colab_installs_the_workbook_then_sets_up(path, colab, installs, capsys):
    source = first_code_cell(path)
    exec(compile(source, str(path), "exec"), {"__name__": "__main__"})  # noqa: S102 - the notebook's own cell

    assert len(installs) == 1, "the workbook must be pip-installed exactly once on Colab"
    command = installs[0]
    assert command[:5] == [sys.executable, "-m", "pip", "install", "-q"]
    assert command[5].startswith("git+https://") and "torch" not in " ".join(command)
    assert colab["widget_manager"] == 1  # ipywidgets 8 need Colab's custom widget manager
    assert "profile" in capsys.readouterr().out  # the settings it runs with are printed


def test_every_notebook_installs_from_the_same_url_or_the_one_in_cxr_workbook_url(colab, installs, monkeypatch):
    urls = {re.search(r'"CXR_WORKBOOK_URL", "([^"]+)"', first_code_cell(path)).group(1) for path in NOTEBOOKS}
    assert len(urls) == 1, urls
    monkeypatch.setenv("CXR_WORKBOOK_URL", "git+https://example.org/fork.git")
    exec(compile(first_code_cell(NOTEBOOKS[0]), "cell", "exec"), {"__name__": "__main__"})  # noqa: S102
    assert installs[0][-1] == "git+https://example.org/fork.git"


def test_outside_colab_the_first_cell_installs_nothing(installs, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(first_code_cell(NOTEBOOKS[0]), "cell", "exec"), {"__name__": "__main__"})  # noqa: S102
    assert installs == []


def test_drive_holds_the_artifacts_when_asked(colab, monkeypatch, tmp_path):
    monkeypatch.setenv("CXR_USE_DRIVE", "1")
    monkeypatch.setenv("CXR_ARTIFACTS_DIR", str(tmp_path / "local"))  # replaced by the Drive folder
    settings = notebook.setup_notebook("Drive check")
    drive_folder = tmp_path / "drive" / "MyDrive" / "cxr-workbook-artifacts" / "phantom"
    assert colab["mounts"] == [str(tmp_path / "drive")]
    assert settings.artifacts_dir == drive_folder and drive_folder.is_dir()
