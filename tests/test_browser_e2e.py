"""End to end in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven by Playwright.

Opens notebooks 01 and 05 (copies, in a temporary folder) on the tiny phantom, runs all cells,
and uses the browsers as a student would: notebook 05's study slider, study-id box, two labels
selected, the truth overlay toggled and a filter; after each the grid and the report must change,
no cell may error, no widget fail to render and the browser show no error. Screenshots are
saved under test-artifacts/. If the browser cannot start, the test fails and says why.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CXR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
pytestmark = pytest.mark.browser
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab in front


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def built_artifacts():
    """The tiny phantom's artifacts through notebook 04 (reused when the notebook tests made them)."""
    from cxr_helpers.config import load_settings

    settings = load_settings()
    if not list((settings.artifacts_dir / "checkpoints").glob("fusion_*.pt")):
        from cxr_helpers.fusion.train import train_fusion
        from cxr_helpers.image_training import train_image
        from cxr_helpers.prepare import ensure_phantom, prepare_cohort
        from cxr_helpers.text.train import train_text

        ensure_phantom(settings)
        prepare_cohort(settings, progress=False)
        train_image(settings, progress=False)
        train_text(settings, progress=False)
        train_fusion(settings, progress=False)
    return settings


@pytest.fixture(scope="module")
def lab(tmp_path_factory, built_artifacts):
    """A JupyterLab server on 127.0.0.1 with a token, serving copies of the notebooks."""
    workdir = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", workdir / "notebooks")
    token, port = secrets.token_hex(16), _free_port()
    log = open(workdir / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
            f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={workdir}",
            "--LabApp.news_url=", f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
    )
    try:
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "dir": workdir, "log": workdir / "jupyterlab.log"}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (never a downloaded browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(f"playwright is not installed ({error}); `pip install playwright` (make test does)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's package (`apt-get install -y chromium`) or set CXR_CHROMIUM")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as error:  # the reason goes into the failure, never a silent skip
            pytest.fail(f"Chromium at {CHROMIUM} could not start: {error}")
        yield chromium
        chromium.close()


def open_notebook(browser, lab, name: str):
    """A page with the notebook open and its kernel ready."""
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    deadline = time.time() + 60
    while True:
        try:
            page.goto(f"{lab['url']}/lab/tree/notebooks/{name}?token={lab['token']}")
            break
        except Exception:
            if time.time() > deadline:
                raise AssertionError(f"JupyterLab did not answer; log:\n{lab['log'].read_text()[-3000:]}") from None
            time.sleep(1)
    page.wait_for_selector(f"{PANEL} .jp-Notebook", timeout=90_000)
    try:
        page.click(".jp-Dialog button:has-text('Select')", timeout=5_000)  # kernel choice dialog, if any
    except Exception:
        pass
    return page


def run_all_and_wait(page, lab, name: str, timeout_s: int = 900) -> dict:
    """Run all cells, wait until every code cell has run, save, and return the saved notebook."""
    page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
    page.click("li.lm-Menu-item:has-text('Run All Cells')")
    deadline, quiet = time.time() + timeout_s, 0
    while time.time() < deadline:
        prompts = page.eval_on_selector_all(
            f"{PANEL} .jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent.replace(/\\s/g, ''))"
        )
        running = any(p == "[*]:" for p in prompts)
        started = any(p[1:-2].isdigit() for p in prompts if len(p) > 3)
        quiet = quiet + 1 if started and not running else 0
        if quiet >= 3:  # nothing queued or running for three polls: done (or stopped at an error)
            break
        time.sleep(2)
    else:
        page.screenshot(path=str(SCREENSHOTS / f"timeout_{name}.png"))
        raise AssertionError(f"{name}: cells still running after {timeout_s} s")
    page.keyboard.press("Control+s")
    time.sleep(2)
    return json.loads((lab["dir"] / "notebooks" / name).read_text())


def assert_no_errors(page, notebook: dict, name: str) -> None:
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    not_run = [i for i, cell in enumerate(code_cells) if cell.get("execution_count") is None]
    errors = [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(notebook["cells"])
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, f"{name} raised in the browser: {errors}"
    assert not code_cells or not not_run, f"{name}: code cells {not_run} never ran"
    body = page.inner_text("body")
    assert "Error displaying widget" not in body, f"{name}: a widget failed to display"
    assert "Failed to load model class" not in body, f"{name}: a widget model failed to load"
    assert "Error rendering output" not in body, f"{name}: an output failed to render"


def widget_state(page, root: str) -> dict:
    """The image sources and the HTML text inside one widget box (found by its CSS class)."""
    return page.eval_on_selector(
        root,
        """el => ({
            images: Array.from(el.querySelectorAll('img')).map(i => i.src.length + ':' + i.src.slice(-64)),
            html: Array.from(el.querySelectorAll('.widget-html-content')).map(h => h.innerHTML).join('|'),
        })""",
    )


def press_slider(page, root: str, key: str = "ArrowRight", times: int = 1) -> None:
    page.focus(f"{root} .noUi-handle, {root} .widget-slider [role=slider]")
    for _ in range(times):
        page.keyboard.press(key)


def wait_for_change(page, root: str, before: dict, timeout_s: float = 120) -> dict:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        now = widget_state(page, root)
        if now != before and not page.query_selector(f"{root} .cxr-busy"):
            return now
        time.sleep(0.5)
    raise AssertionError(f"the widget {root} did not change within {timeout_s} s")


def wait_until(page, root: str, done, what: str, timeout_s: float = 180) -> dict:
    """Poll the widget's state until ``done(state)`` holds and nothing is busy; fail naming ``what``."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        now = widget_state(page, root)
        if done(now) and not page.query_selector(f"{root} .cxr-busy"):
            return now
        time.sleep(0.5)
    page.screenshot(path=str(SCREENSHOTS / f"stuck{root.replace('.', '_')}.png"))
    raise AssertionError(f"{what}: not seen within {timeout_s} s; status: {page.inner_text(root)[:300]}")


def changed(before: dict):
    """A predicate: both the pictures and the HTML differ from ``before``."""
    return lambda now: now["images"] != before["images"] and now["html"] != before["html"]


def run_notebook_to_widget(browser, lab, name: str, root: str):
    """Open ``name``, run all its cells without an error, and bring the widget ``root`` into view.

    Returns the page and the widget's state as first drawn.
    """
    SCREENSHOTS.mkdir(exist_ok=True)
    page = open_notebook(browser, lab, f"{name}.ipynb")
    notebook = run_all_and_wait(page, lab, f"{name}.ipynb")
    assert_no_errors(page, notebook, name)
    page.wait_for_selector(root, timeout=30_000)
    page.locator(root).scroll_into_view_if_needed()
    return page, widget_state(page, root)


def test_notebook_01_browser_in_jupyterlab(browser, lab):
    root = ".cxr-cohort-browser"
    page, before = run_notebook_to_widget(browser, lab, "01_data_prep", root)
    assert before["images"], "the cohort browser shows no image"
    press_slider(page, root)
    after = wait_for_change(page, root, before)
    assert after["images"] != before["images"], "the image did not change when the slider moved"
    assert after["html"] != before["html"], "the report did not change when the slider moved"
    page.locator(f"{root} select").nth(2).select_option(label="test")  # the split filter
    wait_until(page, root, lambda now: "rows match" in now["html"] and "split test" in now["html"],
               "the cohort browser's split filter")
    page.screenshot(path=str(SCREENSHOTS / "browser_01_cohort.png"), full_page=False)
    page.close()


def study_to_check(settings) -> tuple[int, list[str], str]:
    """A test study with two findings drawn on its image (one stated in the report), those two labels,
    and a label some other test study has positive in the CSV but this one has not (for the filter)."""
    from cxr_helpers.labels import CHEXPERT_LABELS
    from cxr_helpers.phantom.truth import load_ground_truth, phantom_root
    from cxr_helpers.prepare import load_cohort

    cohort = load_cohort(settings.artifacts_dir)
    test = cohort[cohort["split"] == "test"].drop_duplicates("study_id")
    truth = load_ground_truth(phantom_root(settings))
    for _, row in test.iterrows():
        drawn = [name for name in CHEXPERT_LABELS if truth.mask(row["dicom_id"], name, settings.image_size) is not None]
        stated = {s["label"] for s in truth.study_spans(row["study_id"]) if s["code"] == 1}
        others = test[test["study_id"] != row["study_id"]]
        filter_labels = [name for name in CHEXPERT_LABELS if row[name] != 1 and (others[name] == 1).any()]
        if len(drawn) >= 2 and stated & set(drawn[:2]) and filter_labels:
            return int(row["study_id"]), drawn[:2], filter_labels[0]
    raise AssertionError("the tiny phantom has no test study with two drawn findings")


def test_notebook_05_browser_in_jupyterlab(browser, lab, built_artifacts):
    root = ".cxr-explanation-browser"
    study_id, labels, filter_label = study_to_check(built_artifacts)
    page, before = run_notebook_to_widget(browser, lab, "05_interpretation", root)
    assert before["images"] and before["html"], "the explanation browser shows no heatmap or report"

    press_slider(page, f"{root} .cxr-study-slider")
    state = wait_until(page, root, changed(before), "the study slider changing heatmap and report")

    page.fill(f"{root} .cxr-study-id input", str(study_id))  # the study-id box: type, Enter
    page.press(f"{root} .cxr-study-id input", "Enter")
    state = wait_until(page, root, lambda now: f"study <b>{study_id}</b>" in now["html"], f"a jump to study {study_id}")

    page.locator(f"{root} .cxr-label-select select").select_option(label=labels)  # two labels
    before, state = state, wait_until(page, root, lambda now: now["html"].count("</b>: p = ") == 2,
                                      f"one SHAP block per selected label {labels}")
    assert state["images"] != before["images"], "the grid did not change with the labels selected"
    assert all(f"<b>{name}</b>: p = " in state["html"] for name in labels)
    page.screenshot(path=str(SCREENSHOTS / "browser_05_two_labels.png"), full_page=False)

    assert "text-decoration:underline" not in state["html"]
    page.click(f"{root} .cxr-truth-toggle")  # the truth overlay: outlines and underlines
    before, state = state, wait_until(page, root, lambda now: "text-decoration:underline" in now["html"],
                                      "the truth overlay underlining the stating words")
    assert state["images"] != before["images"], "the truth overlay did not draw on the grid"
    assert "truly present" in state["html"], "the predictions table shows no truth with the overlay on"
    page.screenshot(path=str(SCREENSHOTS / "browser_05_truth.png"), full_page=False)

    page.click(f"{root} .cxr-baseline-toggle input")  # the image model's map minus its label's baseline
    plain = state
    state = wait_until(page, root, lambda now: now["images"] != plain["images"], "the map minus the label's baseline")
    page.screenshot(path=str(SCREENSHOTS / "browser_05_baseline.png"), full_page=False)
    page.click(f"{root} .cxr-baseline-toggle input")  # and back to the plain map
    subtracted = state
    state = wait_until(page, root, lambda now: now["images"] != subtracted["images"], "the plain map again")

    page.locator(f"{root} .cxr-filter-label select").select_option(label=filter_label)
    state = wait_until(page, root, lambda now: "studies: all studies" in now["html"], "the filter's label taking")
    page.locator(f"{root} .cxr-filter select").select_option(label="label positive in the CSV")
    before, state = state, wait_until(page, root, changed(state), f"the filter '{filter_label} positive'")
    assert f"study <b>{study_id}</b>" not in state["html"], "the filter kept a study it excludes"
    assert "label positive in the CSV" in state["html"]
    page.screenshot(path=str(SCREENSHOTS / "browser_05_explanations.png"), full_page=False)
    assert not page.query_selector(f"{root} .cxr-error"), f"the browser shows an error: {page.inner_text(root)[:500]}"
    assert_no_errors(page, {"cells": []}, "05_interpretation after interaction")  # widgets still render
    page.close()
