"""The scripts of benchmarks/ as modules, for tests of their pure parts (they are not part of the package)."""

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_bench(name: str):
    """benchmarks/<name>.py, executed as a module, with benchmarks/ on the path for its sibling imports
    (``from bench_test_studies import share``), as when it runs as a script."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module
