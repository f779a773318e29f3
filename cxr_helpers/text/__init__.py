"""The text side of the workbook: a report encoder, its cached embeddings, text heads, training.

Read in data-flow order:
- ``encoder``: loading an encoder (hub id or folder, always ``from_pretrained``), pooling its
  token states into one vector per report, and encoding many reports (frozen, batched);
- ``tiny_bert``: the offline stand-in for CXR-BERT that the phantom uses, built here (a WordPiece
  vocabulary and a small BERT pretrained by masked language modelling on the training reports);
- ``embeddings``: which encoder the settings name, and its embeddings cached per cohort row;
- ``heads``: the models that read the embeddings (``TextHead``), encoder + head end to end
  (``TextClassifier``) and the TF-IDF baseline;
- ``train``: notebook 03's job, both text settings (``train_text``).
"""



