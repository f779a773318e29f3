"""Test-session settings shared by unit tests and the notebook runs (nbval).

Every run works in a fresh temporary folder with tiny settings (CXR_FAST=1): notebook 01 builds the
phantom there, later notebooks read what earlier ones wrote, exactly as a student's run would.
Kernels started by nbval inherit these environment variables. The folder is removed when every
test passed; after a failure it is kept for a look, and its path printed. A folder named by
``CXR_TEST_ROOT`` is the caller's and always kept.
"""

import os
import shutil
import tempfile
from pathlib import Path

_MADE_HERE = "_cxr_test_root_made_here"  # the config attribute holding a folder this session made


def pytest_configure(config):
    if os.environ.get("CXR_TEST_ROOT"):
        root = Path(os.environ["CXR_TEST_ROOT"])
    else:
        root = Path(tempfile.mkdtemp(prefix="cxr-tests-"))
        os.environ["CXR_TEST_ROOT"] = str(root)
        setattr(config, _MADE_HERE, root)
    os.environ.update(
        CXR_FAST="1",
        CXR_PROFILE="phantom",
        CXR_DATA_DIR=str(root / "phantom" / "mimic-cxr-jpg"),
        CXR_REPORTS_DIR=str(root / "phantom" / "mimic-cxr-reports"),
        CXR_ARTIFACTS_DIR=str(root / "artifacts"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        MPLBACKEND="Agg",
    )


def pytest_sessionfinish(session, exitstatus):
    """Remove the session's folder (a phantom, checkpoints: over 1 GB) unless a test failed."""
    root = getattr(session.config, _MADE_HERE, None)
    if root is None:
        return
    if session.testsfailed:
        print(f"\ntest artifacts kept for a look in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Run the real-browser tests last: they reuse the artifacts that the notebook runs wrote."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
