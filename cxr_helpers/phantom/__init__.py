"""The phantom: a synthetic MIMIC-CXR with known ground truth, so the workbook runs anywhere.

Real MIMIC-CXR needs credentialed access and hundreds of gigabytes, so the workbook ships with
a *phantom*: a generated dataset written in exactly the same layout (MIMIC-CXR-JPG's image tree
and CSV files, MIMIC-CXR's report text files), which the same code reads as if it were real.

How a study is made:
1. A clinical case is drawn: a care setting (outpatient, inpatient, ICU) and an underlying
   problem (heart failure, infection, after surgery, trauma, cancer, or nothing at all) that
   makes findings co-occur as in life: edema with an enlarged heart and effusions, pneumonia
   with opacities, lines and tubes in the ICU. Prevalences follow MIMIC-CXR's, with the rarest
   labels bumped up so that small phantoms still have positives.
2. Each image (one or two frontal views, PA or AP, often a lateral) is drawn procedurally:
   body, lungs with vessel markings, heart, mediastinum, diaphragm, ribs, then every finding
   where it belongs (a blunted costophrenic angle for an effusion, an apical pleural line for a
   pneumothorax, tubes and a pacemaker for support devices, ...). As in life some findings are
   subtle and some are invisible on the image. Unlike life, the small findings are drawn large
   (a lung lesion is a 3-6 cm mass, atelectasis a 2 cm band, a fractured rib fully displaced),
   so that a model at 128 px can see them: at least 5 px across (docs/phantom.md).
3. A radiologist-style report is written from varied phrasings, with negations ("no
   pneumothorax") and hedges ("cannot exclude pneumonia"); sections vary as in MIMIC (most
   reports have an IMPRESSION, some only FINDINGS, a few neither). The INDICATION never names
   a finding: a property of the phantom (real indications often name the suspected finding),
   which makes it a text input that carries clinical context but none of the labels' words.
4. The labels in ``mimic-cxr-2.0.0-chexpert.csv.gz`` are derived from the report text the way
   the CheXpert labeler does it (impression, else findings, else last paragraph), so they are
   noisy in the same ways as MIMIC's: a finding only described in FINDINGS is blank, a hedge is
   -1, and a finding the radiologist missed is not labelled at all.

Because it is generated, the phantom also knows the truth, written to ``ground_truth/`` (never
read by the pipeline): a mask per finding per image, whether each finding is clear, subtle or
invisible, which words of the report state each finding, and which findings are really present.
Notebook 05 uses these to check whether Grad-CAM and SHAP point at the right pixels and words.
Any image can also be re-rendered without one of its findings, identical elsewhere
(``counterfactual``), to check whether a model's score really depends on the finding.

Everything is deterministic for a seed; each study has its own random stream, so a parallel
build (``workers`` processes) writes exactly the same files as a serial one.

The modules, in the order the data flows through them:

- ``plan``: subjects, studies, MIMIC-style ids and dates, the split per subject.
- ``case``: the clinical case of a study (syndrome, findings present, severity, side, zone).
- ``anatomy``: one image's anatomy, positioning and exposure, in canonical body coordinates.
- ``geometry``: body coordinates to pixels and back; the soft shapes everything is drawn with.
- ``canvas``: one image under construction (density map, lung fields, finding masks).
- ``chest``: the normal chest (body, lungs, heart, mediastinum, spine, ribs).
- ``findings``: how each finding is drawn, where, and its mask.
- ``render``: the density map of an image (``draw``), then the radiograph (``expose``: blur,
  exposure curve, noise, from the anatomy alone, so findings never change other pixels).
- ``phrases``: the phrase banks reports are written from (data only).
- ``spans``: report text that remembers where each finding is mentioned.
- ``reports``: what the radiologist writes about each finding, and the labels derived from it.
- ``shortcut``: a planted spurious cue, a corner marker that goes with one finding (optional).
- ``study``: one study in memory (case, images, report, marker), from its own random stream.
- ``layout``: where the files go and how they are encoded.
- ``settings``: what a phantom was written with (``ground_truth/phantom.json``), to re-render it.
- ``writer``: ``write_phantom``: every study's files, the MIMIC tables and the ground truth.
- ``counterfactual``: any written image re-rendered without one of its findings.
- ``probes``: fresh frontal images with one finding each, and the same images without it.
"""

from cxr_helpers.phantom.writer import write_phantom

__all__ = ["write_phantom"]
