"""Packaging: requirements, pyproject and environment.yml agree; the CLI lists every command."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch

from cxr_helpers import cli, training
from cxr_helpers.config import load_settings
from cxr_helpers.notebook import check_environment

ROOT = Path(__file__).resolve().parent.parent


def _names(lines):
    return {re.split(r"[<>=!~ ;\[]", line.strip(), maxsplit=1)[0].lower() for line in lines if line.strip()}


def requirement_names():
    lines = [line.split("#")[0] for line in (ROOT / "requirements.txt").read_text().splitlines()]
    return _names(lines)


def run_tests_in_a_fresh_session(tmp_path: Path, name: str, body: str) -> tuple[subprocess.CompletedProcess, Path]:
    """pytest in a subprocess with the project's conftest.py, a fresh TMPDIR and no CXR_TEST_ROOT."""
    scratch = tmp_path / f"{name}_tmp"
    scratch.mkdir()
    (tmp_path / f"test_{name}.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "CXR_TEST_ROOT"} | {"TMPDIR": str(scratch)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                             str(tmp_path / f"test_{name}.py")], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    return result, scratch


def test_a_test_session_removes_its_folder_when_all_pass_and_keeps_it_after_a_failure(tmp_path):
    uses_it = "import os\n\ndef test_it():\n    assert os.path.isdir(os.environ['CXR_TEST_ROOT']){}\n"
    passed, scratch = run_tests_in_a_fresh_session(tmp_path, "passing", uses_it.format(""))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert list(scratch.iterdir()) == []  # the session's cxr-tests-* folder is gone
    failed, scratch = run_tests_in_a_fresh_session(tmp_path, "failing", uses_it.format(" and False"))
    kept = list(scratch.glob("cxr-tests-*"))
    assert failed.returncode == 1 and len(kept) == 1 and f"kept for a look in {kept[0]}" in failed.stdout


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


@pytest.mark.parametrize("has_bf16, says", [(True, "in bfloat16"), (False, "in float32 (this CPU has no bfloat16")])
def test_demo_says_in_what_precision_it_trains(monkeypatch, has_bf16, says):
    monkeypatch.setattr(training, "cpu_computes_bfloat16", lambda: has_bf16)
    line = cli.precision_line(load_settings(profile="phantom", fast=False), torch.device("cpu"))
    assert line.startswith(f"Training on cpu {says}")
    assert cli.precision_line(load_settings(profile="mimic", fast=False), torch.device("cpu")) == "Training on cpu in float32"


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
