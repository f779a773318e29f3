"""Helpers for the CXR fusion workbook: data, models, training, metrics and explanations.

Nothing heavy is imported here, so `import cxr_helpers` is instant; import the module you need
(`from cxr_helpers import config, labels, ...`).
"""

__version__ = "0.1.0"
