"""Are the explanations right? Grad-CAM and SHAP checked against the phantom's ground truth.

The phantom knows where each finding was drawn (a mask per finding per image) and which words of
the report state it (character spans), so on the phantom an explanation can be *scored*. Every
check is reported beside a random baseline, because "the heatmap peak lies in the mask 40% of
the time" means little until we know a random peak would do so 10% of the time.

- ``truth``: the ground truth as the checks read it;
- ``scores``: pure scores of one explanation (pointing game, energy in the mask, top-k words, ...);
- ``spans``: which words of the cleaned text state a finding;
- ``checks``: the checks that run the models, per study; ``randomisation``: the sanity check
  of Adebayo et al. (2018); ``report``: everything into ``metrics/faithfulness.json``.

Nothing here can be checked on MIMIC-CXR itself: it has no masks and no spans.
"""
