"""Explanations: Grad-CAM on the X-ray, SHAP on the report, per study, and whether they are right.

Read in data-flow order:
- ``gradcam``: class activation maps (pytorch-grad-cam) for one label's logit; ``figures``: overlays;
- ``shap_text``: SHAP values of the report's words (shap's partition explainer, word masking);
- ``models``: the trained models being explained, loaded from the artifacts folder;
- ``cache``: explanations stored per model, study, label and method;
- ``study``: ``StudyExplainer``, everything about one study; ``export``: one study to files;
- ``browser``: the ipywidgets study browser of notebook 05 (its widgets in ``browser_widgets``, what it
  draws in ``browser_panels``); it finds studies with ``study_finder`` and shows other views with ``study_views``;
- ``faithfulness/``: explanations checked against the phantom's ground truth and random baselines.
"""
