"""Fusion of the X-ray and its report: the paper's late fusion and two strategies it left for later.

Read in data-flow order:
- ``model``: ``FusionModel``, one interface for every strategy (``concat``, the paper;
  ``decision``; ``film``), fed a cached report embedding or the text encoder end to end;
- ``build``: a fusion model on notebook 02's image encoder, and rebuilding a trained one;
- ``trunk_cache``: the frozen image encoder's outputs computed once, so heads train in seconds;
- ``ablation``: remove a modality (the report, or the image) and see what the model leans on;
- ``train``: notebook 04's job (``train_fusion``); ``tables``: its tables and figures.
"""
