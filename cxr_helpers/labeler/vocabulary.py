"""What counts as a mention of each CheXpert label: our own phrase lists, as regular expressions.

Written for real radiology reports (MIMIC-CXR, Open-i), following the published CheXpert labeler's
idea (Irvin et al., AAAI 2019): each label has mention phrases; a mention is then classified
negative / uncertain / positive by ``rules.py``. The phrases are matched on lower-case text, whole
words only; when phrases overlap, the longer one wins ("pericardial effusion" is not a pleural
effusion, "nodular opacity" is a lung lesion and not also an opacity).

Four kinds of entries:
- ``MENTIONS``: a phrase that names the finding ("cardiomegaly", "pleural effusion").
- ``WEAK_MENTIONS``: a phrase that points at the finding without stating it. A positive weak
  mention counts as uncertain (-1), a negated one as negative; "normal" after it makes it negative.
  Used for pulmonary vascular congestion and vascular prominence (Edema), see docs/labeler.md.
- ``QUALIFIED_MENTIONS``: a generic anatomy phrase ("heart size", "cardiac silhouette",
  "mediastinum") that only counts together with a size word: enlarged -> positive, normal ->
  negative, borderline -> uncertain; without a size word it is not a mention ("heart size is stable").
- ``OTHER_FINDINGS``: abnormalities outside the 14 labels (emphysema, granuloma, scoliosis, ...).
  They set no label, but a positive or uncertain one means the report is not "No Finding", as in
  the CheXpert labeler. Degenerative change is left out on purpose (docs/labeler.md).

Decisions (why, in docs/labeler.md): borderline heart size -> Cardiomegaly uncertain; "upper limits
of normal" / "top normal" -> negative; vascular congestion -> Edema uncertain; blunting of the
costophrenic angle -> other finding, not an effusion; granuloma and calcified nodules -> other
finding, not a lung lesion; sternotomy wires and surgical clips -> other finding, not support
devices; healed fractures are fractures; hydropneumothorax -> Pneumothorax and Pleural Effusion.
"""

from __future__ import annotations

from cxr_helpers.labels import CHEXPERT_LABELS

OTHER_FINDING = "Other Finding"  # the pseudo-label of OTHER_FINDINGS mentions (evidence only)
FINDING_LABELS = tuple(label for label in CHEXPERT_LABELS if label != "No Finding")

# Label -> regular expressions (lower-case text, matched with word boundaries around each).
MENTIONS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        r"atelecta\w*",
        r"(?:lobar|lobe|segmental|subsegmental|lung|lingular|basilar|complete|partial)\s+collapse",
        r"collapsed?\s+(?:of\s+the\s+)?(?:right|left|lingula|lung|lobe)\w*(?:\s+(?:upper|middle|lower)\s+lobe)?",
        r"collapse\s+of\s+the\s+(?:right|left)\s+(?:upper|middle|lower)\s+lobe",
    ),
    "Cardiomegaly": (
        r"cardiomegal\w*",
        r"cardiac\s+enlargement",
        r"enlarge(?:d|ment\s+of\s+the)\s+heart",
    ),
    "Consolidation": (r"consolidat\w*",),
    "Edema": (
        r"(?:(?:pulmonary|interstitial|alveolar|perihilar|airspace|air\s+space|lung)\s+)?edema",
        r"edematous\s+(?:lungs?|changes)",
        r"kerley\s+b?\s*lines",
        r"(?:congestive\s+)?heart\s+failure",  # CheXpert: an Edema mention, and Cardiomegaly uncertain
        r"chf",
    ),
    "Enlarged Cardiomediastinum": (
        r"(?:cardio)?mediastinal\s+(?:widening|enlargement|prominence)",
        r"widening\s+of\s+the\s+(?:superior\s+)?mediastinum",
        r"widened\s+(?:superior\s+)?mediastinum",
    ),
    "Fracture": (
        r"fractur\w*",
        r"fx",
    ),
    "Lung Lesion": (
        r"nodules?",
        r"non\s*-?\s*calcified\s+(?:nodul\w*|masses|mass|lesions?|densit(?:y|ies)|opacit(?:y|ies))",
        r"nodular\s+(?:densit(?:y|ies)|opacit(?:y|ies)|opacification|lesions?|infiltrates?)",
        r"micronodul\w*",
        r"mass(?:es)?",
        r"mass\s*-?\s*like\s+(?:densit(?:y|ies)|opacit(?:y|ies)|lesions?)",
        r"(?:lung|pulmonary|parenchymal|cavitary|cavitating|spiculated|apical|hilar)\s+lesions?",
        r"tumou?rs?",
        r"neoplasms?",
        r"(?:bronchogenic\s+)?carcinoma",
        r"malignan(?:cy|cies|t)",
        r"metastas[ie]s",
        r"metastatic\s+(?:disease|lesions?|deposits?)",
    ),
    "Lung Opacity": (
        r"opacit(?:y|ies)",
        r"opacification",
        r"opacified",
        r"infiltrat\w*",
        r"air\s*-?\s*space\s+(?:disease|process|opacit(?:y|ies)|filling)",
        r"ground\s*-?\s*glass",
    ),
    "Pleural Effusion": (
        r"effusions?",
        r"pleural\s+fluid",
        r"hydrothorax",
        r"hemothorax",
        r"fissural\s+fluid",
        r"fluid\s+(?:in|within|tracking\s+along)\s+the\s+(?:right\s+|left\s+)?(?:major\s+|minor\s+)?fissures?",
        r"hydropneumothora(?:x|ces)",
    ),
    "Pleural Other": (
        r"pleural\s+(?:thickening|scarring|scar|plaques?|calcifications?|reaction)",
        r"pleuro\s*-?\s*parenchymal\s+(?:scarring|scar|thickening)",
        r"fibrothorax",
        r"apical\s+(?:pleural\s+)?cap(?:ping|s)?",
    ),
    "Pneumonia": (
        r"(?:broncho)?pneumonias?",
        r"infections?",
        r"infectious\s+(?:process|etiology|processes|infiltrates?)",
    ),
    "Pneumothorax": (
        r"pneumothora(?:x|ces)",
        r"ptx",
        r"hydropneumothora(?:x|ces)",
    ),
    "Support Devices": (
        r"(?:endotracheal|tracheostomy|trach|et|ng|og|nasogastric|orogastric|enteric|feeding|chest|"
        r"thoracostomy|dobhoff|gastric|gastrostomy|nasoenteric|drainage|mediastinal)\s+tubes?",
        r"tubes?",
        r"tracheostomy",
        r"ett|ngt|ogt",
        r"(?:lines?|tubes?)\s+and\s+(?:lines?|tubes?)",
        r"(?:central|venous|arterial|picc|pic|midline|swan\s*-?\s*ganz|dialysis|jugular|subclavian|femoral|"
        r"catheter|port|infusion|ij|cvc|central\s+venous)\s+(?:line|lines|catheter|catheters)",
        r"picc",
        r"catheters?",
        r"pace\s*makers?|pacers?|pacing\s+(?:wires?|leads?|device)|defibrillators?|a?icds?",
        r"(?:pacer|pacemaker|pacing|icd|defibrillator|epicardial|transvenous|cardiac)\s+(?:leads?|wires?)",
        r"(?:external\s+)?(?:cardiac\s+)?(?:monitor|monitoring|ecg|ekg)\s+(?:leads?|wires?)",
        r"leads?\s+(?:terminat\w*|in\s+(?:the\s+)?(?:right|left)\s+(?:atrium|ventricle))",
        r"port\s*-?\s*a\s*-?\s*caths?|portacaths?|mediports?|(?:chest|power|infusion)\s+ports?",
        r"stents?",
        r"(?:prosthetic|mechanical|replacement)\s+(?:aortic\s+|mitral\s+|pulmonic\s+|tricuspid\s+)?valves?",
        r"(?:aortic|mitral|pulmonic|tricuspid)\s+valve\s+(?:replacement|prosthesis)",
        r"valve\s+(?:replacement|prosthesis)",
        r"(?:support|monitoring|cardiac|implanted|implantable|electronic)\s+devices?",
        r"devices?",
        r"drains?",
        r"cannula",
        r"(?:intra\s*-?\s*aortic\s+)?balloon\s+pump|iabp|lvad|impella",
        r"(?:orthopedic\s+|spinal\s+|fixation\s+)?hardware",
        r"(?:loop\s+recorder|neuro\s*-?\s*stimulator|stimulator)",
    ),
}

# Phrases that point at a finding without stating it: positive counts as uncertain (-1).
WEAK_MENTIONS: dict[str, tuple[str, ...]] = {
    "Edema": (
        r"(?:pulmonary\s+|central\s+|mild\s+|hilar\s+)?(?:vascular|venous)\s+(?:congestion|engorgement)",
        r"pulmonary\s+congestion",
        r"congestive\s+(?:changes|failure)",
        r"fluid\s+overload",
        # CheXpert: "vascular prominence" and "indistinctness" (of the vessels) are uncertain edema
        r"(?:pulmonary\s+|central\s+|hilar\s+|perihilar\s+)?vascular\s+(?:prominence|indistinctness)",
        r"indistinct(?:ness\s+of\s+the)?\s+(?:pulmonary\s+)?(?:vessels|vasculature|vascular\s+markings)",
    ),
}
# Mentions that also make another label uncertain (CheXpert's aggregation: a positive or uncertain
# "heart failure" / "CHF" adds Cardiomegaly -1).
ALSO_UNCERTAIN: dict[str, tuple[str, str]] = {
    "Edema": (r"(?:congestive\s+)?heart\s+failure|chf", "Cardiomegaly"),
}
# Support devices that CheXpert's list of other findings names too ("defib", "tracheostomy"): a
# positive or uncertain one keeps the report from No Finding although devices otherwise do not.
DEVICES_THAT_ARE_FINDINGS = r"defib\w*|tracheostom\w*"

# Generic anatomy phrases that need a size word (see SIZE_WORDS).
QUALIFIED_MENTIONS: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": (
        r"heart\s+size",
        r"size\s+of\s+the\s+heart",
        r"(?:cardiac|heart|cardiopericardial|cardiothymic)\s+(?:silhouettes?|size|shadow|contours?|outline|diameter"
        r"|dimensions?|configuration|borders?)",
        r"heart(?!\s+(?:failure|disease|valve|rate|murmur|surgery|transplant|border))",
        r"cardiac(?=\s+and\s+(?:cardio)?mediastinal)",
    ),
    "Enlarged Cardiomediastinum": (
        r"cardio\s*-?\s*mediastinal(?:\s+(?:silhouettes?|contours?|shadow|structures|width|borders?))?",
        r"cardiomediastinum",
        r"(?:superior\s+)?mediastinum",
        r"mediastinal\s+(?:silhouettes?|contours?|shadow|structures|width|borders?|configuration|size)",
        r"mediastinal(?=\s*(?:and|,)\s)",
    ),
}
# Size words for the qualified phrases: label -> code -> expressions. "upper limits of normal",
# "top normal" and "high normal" contain "normal" and so read as negative; "borderline" is uncertain.
SIZE_WORDS: dict[str, dict[int, tuple[str, ...]]] = {
    "Cardiomegaly": {
        1: (
            r"borderline\s+(?:enlarge\w*|large|prominen\w*)",
            r"enlarge\w*",
            r"large",
            r"larger",
            r"increased",
            r"prominen\w*",
            r"big",
            r"dilated",
        ),
        0: (
            r"normal(?:\s*-?\s*sized?)?",
            r"within\s+(?:the\s+)?(?:normal\s+)?limits",
            r"limits\s+of\s+normal",
            r"wnl",
            r"unremarkable",
        ),
        -1: (r"borderline",),
    },
    "Enlarged Cardiomediastinum": {
        1: (r"widen\w*", r"wide", r"enlarge\w*", r"large", r"prominen\w*", r"increased", r"broad\w*"),
        0: (
            r"normal(?:\s*-?\s*sized?)?",
            r"within\s+(?:the\s+)?(?:normal\s+)?limits",
            r"limits\s+of\s+normal",
            r"wnl",
            r"unremarkable",
            r"narrow\w*",
        ),
        -1: (r"borderline",),
    },
}
# Words after a weak mention that make it negative ("vascular congestion ... within normal limits").
NORMAL_WORDS: tuple[str, ...] = (
    r"normal",
    r"within\s+(?:the\s+)?(?:normal\s+)?limits",
    r"limits\s+of\s+normal",
    r"unremarkable",
)

# Abnormalities outside the 14 labels: positive or uncertain ones make No Finding blank.
OTHER_FINDINGS: tuple[str, ...] = (
    # lungs and airways
    r"emphysema\w*",
    r"copd",
    r"chronic\s+obstructive",
    r"chronic\s+lung\s+disease",
    r"hyper\s*-?\s*inflat\w*",
    r"hyper\s*-?\s*expan\w*",
    r"over\s*-?\s*(?:inflat|expan|aerat)\w*",
    r"hyper\s*-?\s*aerat\w*",
    r"hyperluc\w*",
    r"(?:low|decreased|diminished|reduced)\s+lung\s+volumes?",
    r"lung\s+volumes?\s+(?:are|is)\s+(?:\w+\s+){0,4}?(?:low|decreased|diminished|reduced)",
    r"hypo\s*-?\s*(?:inflat|expan|aerat)\w*",
    r"under\s*-?\s*(?:inflat|expan|aerat)\w*",
    r"hypoventilat\w*",
    r"(?:bronchovascular\s+)?crowding",
    r"volume\s+loss",
    r"loss\s+of\s+(?:lung\s+)?volume",
    r"interstitial\s+(?:markings|prominence|thickening|disease|lung\s+disease|pattern|changes|fibrosis)",
    r"(?:prominent|coarse|coarsened|increased)\s+(?:interstitial|bronchovascular|lung)\s+markings",
    r"reticul\w*",
    r"fibros\w*",
    r"fibrotic",
    r"scar(?:s|ring|red)?",
    r"cicatri\w*",
    r"granulom\w*",
    r"calcified\s+(?:nodules?|lymph|nodes?|hilar|mediastinal|granulom\w*)",
    r"calcifications?",
    r"calcified",
    r"calcinosis",
    r"bronchiectasis",
    r"bronchitis",
    r"bronchiolitis",
    r"(?:bronchial|peribronchial)\s+(?:wall\s+)?thickening",
    r"(?:peribronchial\s+)?cuffing",
    r"thickening",
    r"airways?\s+disease",
    r"bullae?",
    r"bullous",
    r"blebs?",
    r"cysts?",
    r"cystic",
    r"cavit\w*",
    r"aspiration",
    r"pneumonitis",
    r"contusions?",
    r"hemorrhage",
    r"hematoma",
    r"densit(?:y|ies)",
    r"lucenc(?:y|ies)",
    r"sarcoid\w*",
    r"tuberculosis",
    r"tb",
    r"histoplasm\w*",
    r"blunt\w*",
    r"pneumomediastinum",
    r"pneumoperitoneum",
    r"free\s+(?:intraperitoneal\s+)?air",
    r"subcutaneous\s+(?:emphysema|air|gas)",
    r"air\s*-?\s*fluid\s+levels?",
    # heart, vessels, mediastinum
    r"pericardial\s+effusions?",
    r"(?:atrial|ventricular|chamber)\s+enlargement",
    r"(?:left|right)\s+(?:atrial|ventricular)\s+enlargement",
    r"atherosclero\w*",
    r"atheromatous",
    r"tortu\w*",
    r"ectasia",
    r"ectatic",
    r"aneurysm\w*",
    r"(?:dilated|dilatation\s+of\s+the|unfolded|unfolding\s+of\s+the)\s+(?:thoracic\s+)?aorta",
    r"aortic\s+(?:dilatation|dilation|enlargement|unfolding|prominence)",
    r"(?:lymph)?adenopathy",
    r"(?:hilar|mediastinal)\s+(?:enlargement|prominence|fullness)",
    r"(?:prominent|enlarged)\s+(?:pulmonary\s+arter\w*|hila|hilum)",
    r"prominen\w*\s+(?:of\s+the\s+)?(?:\w+\s+)?hil(?:a|um|ar)\b(?:\s+contours?)?",
    r"(?:pulmonary\s+(?:arterial\s+|venous\s+)?)?hypertension",
    r"cephalization",
    r"(?<!most\s)(?<!more\s)(?<!less\s)prominen\w*",  # CheXpert counts any "prominen"; "most prominent in" locates
    r"inflam\w*",
    r"bronchospasm",
    r"asthma\w*",
    r"aortic\s+disease",
    r"plaques?",
    r"thoracentesis",
    r"radiopaque",
    r"aerophagia",
    # diaphragm, bones, soft tissue
    r"elevat\w*",
    r"eventration",
    r"flatten\w*",
    r"hernia\w*",
    r"scolio\w*",
    r"(?:dextro|levo)\s*-?\s*(?:scolio\w*|curvature)",
    r"curvature",
    r"kyphos\w*",
    r"kyphotic",
    r"lordosis",
    r"osteopen\w*",
    r"osteoporo\w*",
    r"osteodystroph\w*",
    r"demineraliz\w*",
    r"osteophyt\w*",
    r"spondylo\w*",
    r"arthriti\w*",
    r"arthropathy",
    r"deformit\w*",
    r"(?:compression|wedge)\s+deformit\w*",
    r"dislocat\w*",
    r"subluxation",
    r"lytic",
    r"sclerotic",
    r"osseous\s+lesions?",
    r"bon(?:e|y)\s+lesions?",
    r"lytic\s+lesions?",
    r"(?:vertebral|vertebra)\s+(?:body\s+)?(?:collapse|height\s+loss)",
    r"height\s+loss",
    r"(?:soft\s+tissue|subcutaneous|chest\s+wall)\s+edema",
    r"mass\s+effect",
    r"foreign\s+bod(?:y|ies)",
    r"bullets?",
    r"shrapnel",
    r"piercings?",
    r"projectiles?",
    r"pectus\s+(?:excavatum|carinatum)",
    # prior surgery (not support devices)
    r"sternotomy",
    r"sternal\s+(?:wires?|sutures?)",
    r"(?:cerclage|sternotomy)\s+wires?",
    r"cabg",
    r"post\s*-?\s*(?:operative|surgical|radiation|thoracotomy)\s+changes?",
    r"(?:surgical|vascular|mediastinal|axillary|hilar|neck|thoracic)\s+clips?",
    r"sutures?",
    r"suture\s+lines?",
    r"(?:lob|pneumon|mastect|segmentect|wedge\s+resect)\w*ectom\w*",
    r"lobectomy",
    r"pneumonectomy",
    r"mastectomy",
    r"thoracotomy",
    r"resection",
)
