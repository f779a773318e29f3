"""Packaging: requirements, pyproject and environment.yml agree; the CLI lists every command."""

import json
import re
from pathlib import Path

import pytest
import tomllib

from cxr_helpers import cli
from cxr_helpers.notebook import check_environment

ROOT = Path(__file__).resolve().parent.parent


def _names(lines):
    return {re.split(r"[<>=!~ ;\[]", line.strip(), maxsplit=1)[0].lower() for line in lines if line.strip()}


def requirement_names():
    lines = [line.split("#")[0] for line in (ROOT / "requirements.txt").read_text().splitlines()]
    return _names(lines)


def test_every_requirement_line_is_commented_with_its_notebooks():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "#" in line, f"requirements.txt line without a comment: {line!r}"
            assert ">=" in line and "==" not in line, f"use lower bounds only: {line!r}"


def test_pyproject_dependencies_match_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"] + project["optional-dependencies"]["dev"])
    assert requirement_names() == declared, requirement_names() ^ declared


def test_environment_yml_reuses_requirements_and_installs_the_package():
    text = (ROOT / "environment.yml").read_text()
    assert "-r requirements.txt" in text and "-e ." in text


def test_environment_check_reports_ok_for_installed_packages():
    lines = check_environment({"numpy": "1.0", "no-such-package-xyz": "1.0", "pandas": "999.0"})
    assert lines["numpy"].startswith("[OK]")
    assert lines["no-such-package-xyz"].startswith("[FAIL]")
    assert lines["pandas"].startswith("[FAIL]") and "need >= 999.0" in lines["pandas"]


@pytest.mark.parametrize("command", ["phantom", "prepare", "train", "explain", "demo"])
def test_cli_has_the_documented_commands(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_demo_runs_a_notebook_headless_over_local_sockets(tmp_path, monkeypatch, capfd):
    """`make demo`'s runner executes a notebook, saves it with outputs, and opens no TCP kernel ports."""
    for name, folder in (("CXR_DATA_DIR", "phantom/mimic-cxr-jpg"), ("CXR_REPORTS_DIR", "phantom/mimic-cxr-reports"),
                         ("CXR_ARTIFACTS_DIR", "artifacts")):
        monkeypatch.setenv(name, str(tmp_path / folder))
    seconds = cli.run_notebook("01_data_prep", tmp_path / "executed")
    executed = json.loads((tmp_path / "executed" / "01_data_prep.ipynb").read_text())
    outputs = [out for cell in executed["cells"] if cell["cell_type"] == "code" for out in cell["outputs"]]
    assert seconds > 0 and outputs and not [out for out in outputs if out["output_type"] == "error"]
    assert (tmp_path / "artifacts" / "cohort.csv").exists()  # the kernel saw this test's settings
    assert "without encryption" not in capfd.readouterr().err  # the kernel talked over Unix sockets, not TCP
