"""Importing the Open-i (Indiana University) chest X-ray collection into the MIMIC-CXR layout.

``python -m cxr_helpers openi --reports ... --images ... --out data/openi`` (or ``import_openi``)
reads the collection in NLM's form (XML reports, PNG images, as archives or folders) or Kaggle's
(two CSVs and a PNG folder) and writes the MIMIC-CXR-JPG + reports layout the workbook reads,
so ``CXR_PROFILE=openi`` runs the same notebooks on real radiographs. docs/openi.md is the guide.

Modules: ``records`` (the report record, ids, skips), ``archive`` (folders and archives, never
unpacked), ``nlm`` and ``kaggle`` (the two forms), ``views`` (frontal or lateral), ``convert``
(PNG -> JPEG), ``labeling`` (labeler and MeSH labels), ``layout`` (the files written),
``summary``, ``importer`` (the steps in order) and ``cli``.

The collection is licensed CC BY-NC-ND 4.0: what the importer writes is a derivative; keep it
private. Cite Demner-Fushman D, et al. J Am Med Inform Assoc. 2016;23(2):304-310.
"""

from cxr_helpers.openi.importer import ImportOptions, ImportResult, import_openi
from cxr_helpers.openi.records import CITATION, LICENCE

__all__ = ["CITATION", "LICENCE", "ImportOptions", "ImportResult", "import_openi"]
