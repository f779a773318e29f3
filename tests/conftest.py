"""Session fixtures shared by several test modules (the environment itself is set in ../conftest.py)."""

from __future__ import annotations

import pytest
from explain_factory import build_artifacts


@pytest.fixture(scope="session")
def explain_settings(tmp_path_factory):
    """Settings of a tiny artifacts folder with every model and a hand-made ground truth (built once)."""
    return build_artifacts(tmp_path_factory.mktemp("explain"))
