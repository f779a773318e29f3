"""The phrase banks the phantom's reports are written from (data only).

In a template, "[[...]]" marks the words stating the finding (recorded as a span) and "{...}" is
filled per study (side, location, size, severity). A marker "[[ECM:...]]" names another label than
the sentence's own (combined sentences); ``SHORT_NAMES`` lists those three-letter names.
"""

SHORT_NAMES = {
    "ATE": "Atelectasis",
    "CAR": "Cardiomegaly",
    "CON": "Consolidation",
    "EDE": "Edema",
    "ECM": "Enlarged Cardiomediastinum",
    "FRA": "Fracture",
    "LES": "Lung Lesion",
    "OPA": "Lung Opacity",
    "EFF": "Pleural Effusion",
    "PLO": "Pleural Other",
    "PNA": "Pneumonia",
    "PTX": "Pneumothorax",
    "DEV": "Support Devices",
}
# Lower-case word stems, one of which every span of the label contains (tests check this; the
# phantom's INDICATION never contains any of them: on the phantom, unlike many real reports, the
# indication-only text setting holds none of the labels' words).
LABEL_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("atelecta",),
    "Cardiomegaly": ("cardiomegaly", "heart", "cardiac"),
    "Consolidation": ("consolidat",),
    "Edema": ("edema", "congestion"),
    "Enlarged Cardiomediastinum": ("mediastin",),
    "Fracture": ("fracture",),
    "Lung Lesion": ("nodul", "mass", "lesion"),
    "Lung Opacity": ("opacit",),
    "Pleural Effusion": ("effusion",),
    "Pleural Other": ("thickening",),
    "Pneumonia": ("pneumonia", "infection"),
    "Pneumothorax": ("pneumothora",),
    "Support Devices": ("tube", "line", "catheter", "pacemaker", "pacer", "device", "lead", "wire"),
}


POSITIVE: dict[str, list[str]] = {
    "Atelectasis": [
        "Plate-like [[atelectasis]] at the {side} base.",
        "{Side} basilar [[atelectasis]] is seen.",
        "There is [[atelectasis]] at the {side} lung base.",
        "Subsegmental [[atelectasis]] in the {side} lower lobe.",
        "Linear [[atelectasis]] at the {side} base.",
    ],
    "Cardiomegaly": [
        "The [[heart is {sev_adv} enlarged]].",
        "{Sev_adj} [[cardiomegaly]].",
        "The [[cardiac silhouette is {sev_adv} enlarged]].",
        "There is {sev_adj} [[cardiomegaly]].",
        "[[Heart size is {sev_adv} enlarged]].",
    ],
    "Consolidation": [
        "[[Consolidation]] in the {loc}.",
        "There is {loc} [[consolidation]].",
        "Dense {loc} [[consolidation]] is present.",
        "Focal [[consolidation]] in the {loc}.",
    ],
    "Edema": [
        "{Sev_adj} pulmonary [[edema]].",
        "There is {sev_adj} interstitial pulmonary [[edema]].",
        "Findings are consistent with {sev_adj} pulmonary [[edema]].",
        "{Sev_adj} pulmonary [[vascular congestion]] and interstitial [[edema]].",
        "Perihilar haziness consistent with {sev_adj} [[edema]].",
    ],
    "Enlarged Cardiomediastinum": [
        "The [[mediastinum is widened]].",
        "Widening of the [[mediastinum]].",
        "The [[cardiomediastinal silhouette is enlarged]].",
        "[[Mediastinal widening]] is noted.",
    ],
    "Fracture": [
        "Acute {side} rib [[fracture]].",
        "There is a [[fracture]] of the {side} {nth} rib.",
        "{Side} {nth} rib [[fracture]] is seen.",
        "Minimally displaced {side} rib [[fracture]].",
    ],
    "Lung Lesion": [
        "{Size_cm} cm [[nodule]] in the {loc}.",
        "There is a {size_cm} cm {loc} [[mass]].",
        "{Loc} pulmonary [[nodule]] measuring {size_cm} cm.",
        "A rounded [[nodule]] is seen in the {loc}.",
    ],
    "Lung Opacity": [
        "Patchy {loc} [[opacity]].",
        "There are patchy [[opacities]] in the {loc}.",
        "Ill-defined {loc} [[opacities]].",
        "Increased [[opacity]] in the {loc}.",
    ],
    "Pleural Effusion": [
        "There {is} {a}{size} {side} [[pleural effusion{s}]].",
        "{Size} {side} [[pleural effusion{s}]].",
        "{Size} {side} [[effusion{s}]] with blunting of the costophrenic angle.",
        "{Side} [[pleural effusion{s}]] {is} {size}.",
    ],
    "Pleural Other": [
        "{Side} apical [[pleural thickening]].",
        "There is {side} [[pleural thickening]].",
        "Chronic {side} [[pleural thickening]] is unchanged.",
    ],
    "Pneumonia": [
        "{Loc} [[pneumonia]].",
        "Findings consistent with {loc} [[pneumonia]].",
        "Findings compatible with [[pneumonia]] in the {loc}.",
        "{Loc} [[pneumonia]] is present.",
    ],
    "Pneumothorax": [
        "{Size} {side} apical [[pneumothorax]].",
        "There is a {size} {side} [[pneumothorax]].",
        "{Side} apical [[pneumothorax]] is {size}.",
        "{Size} {side} [[pneumothorax]] with visible pleural edge.",
    ],
}
DEVICE_SENTENCES: dict[str, list[str]] = {
    "et_tube": [
        "[[Endotracheal tube]] terminates {cm} cm above the carina.",
        "An [[ET tube]] is in standard position.",
        "The [[endotracheal tube]] tip is {cm} cm above the carina.",
    ],
    "central_line": [
        "{Side} internal jugular [[central line]] terminates in the SVC.",
        "{Side} [[PICC line]] tip in the mid SVC.",
        "[[Central venous catheter]] tip projects over the cavoatrial junction.",
    ],
    "ng_tube": [
        "[[Enteric tube]] passes below the diaphragm.",
        "[[Nasogastric tube]] courses into the stomach.",
        "An [[NG tube]] is in the stomach.",
    ],
    "pacemaker": [
        "Left chest wall [[pacemaker]] with [[leads]] in the right atrium and right ventricle.",
        "[[Pacemaker]] device with [[leads]] in standard position.",
        "Dual-chamber [[pacer]] is unchanged.",
    ],
}
DEVICE_SUMMARIES = [
    "[[Lines and tubes]] are in standard position.",
    "[[Support devices]] are unchanged in position.",
    "Satisfactory position of the [[support devices]].",
]
UNCERTAIN: dict[str, list[str]] = {
    "Atelectasis": [
        "Minimal {side} basilar changes likely reflect [[atelectasis]].",
        "Probable [[atelectasis]] at the {side} base.",
        "Possible subsegmental [[atelectasis]] in the {side} lower lobe.",
    ],
    "Cardiomegaly": [
        "Borderline [[heart size]].",
        "Possible mild [[cardiomegaly]].",
        "The [[cardiac silhouette]] may be mildly enlarged.",
    ],
    "Consolidation": [
        "Possible {loc} [[consolidation]].",
        "Cannot exclude early [[consolidation]] in the {loc}.",
        "Questionable {loc} [[consolidation]].",
    ],
    "Edema": [
        "Possible mild pulmonary [[edema]].",
        "Cannot exclude mild [[edema]].",
        "Findings may reflect mild pulmonary [[edema]].",
    ],
    "Enlarged Cardiomediastinum": [
        "The [[mediastinum]] may be widened.",
        "Possible [[mediastinal widening]], perhaps due to technique.",
        "The [[cardiomediastinal silhouette]] is possibly enlarged.",
    ],
    "Fracture": [
        "Possible nondisplaced {side} rib [[fracture]].",
        "Cannot exclude a {side} rib [[fracture]].",
    ],
    "Lung Lesion": [
        "Possible {loc} [[nodule]].",
        "Cannot exclude a {loc} [[nodule]].",
        "Questionable [[nodular density]] in the {loc}.",
    ],
    "Lung Opacity": [
        "Subtle {loc} [[opacity]] may be due to overlapping soft tissue.",
        "Possible faint [[opacity]] in the {loc}.",
    ],
    "Pleural Effusion": [
        "Possible small {side} [[pleural effusion]].",
        "Blunting of the {side} costophrenic angle may represent a small [[effusion]].",
        "Cannot exclude a small {side} [[pleural effusion]].",
    ],
    "Pleural Other": [
        "Possible {side} [[pleural thickening]].",
        "{Side} apical density may represent [[pleural thickening]].",
    ],
    "Pneumonia": [
        "Findings may represent [[pneumonia]] in the appropriate clinical setting.",
        "[[Pneumonia]] cannot be excluded.",
        "Possible early [[pneumonia]].",
        "Concerning for [[infection]].",
        "Possible developing [[pneumonia]] in the {loc}.",
    ],
    "Pneumothorax": [
        "Possible tiny {side} apical [[pneumothorax]].",
        "A small {side} apical [[pneumothorax]] cannot be excluded.",
    ],
    "Support Devices": [
        "[[Catheter]] tip may be in the right atrium.",
    ],
}
NEGATIVE: dict[str, list[str]] = {
    "Atelectasis": ["No [[atelectasis]].", "There is no [[atelectasis]]."],
    "Cardiomegaly": [
        "[[Heart size is normal]].",
        "The [[heart]] is not enlarged.",
        "The [[cardiac silhouette]] is within normal limits.",
        "Normal [[heart size]].",
        "No [[cardiomegaly]].",
    ],
    "Consolidation": ["No focal [[consolidation]].", "There is no [[consolidation]].",
                      "No evidence of focal [[consolidation]]."],
    "Edema": ["No pulmonary [[edema]].", "There is no [[edema]].", "No evidence of pulmonary [[edema]]."],
    "Enlarged Cardiomediastinum": [
        "The [[cardiomediastinal silhouette]] is normal.",
        "Normal [[mediastinal contours]].",
        "[[Mediastinal]] and hilar contours are normal.",
        "The [[cardiomediastinal silhouette]] is within normal limits.",
    ],
    "Fracture": ["No displaced [[fracture]].", "No acute rib [[fracture]].", "No [[fracture]] is identified."],
    "Lung Lesion": ["No suspicious pulmonary [[nodule]].", "No [[mass]] is seen."],
    "Lung Opacity": ["No focal [[opacity]].", "No new [[opacities]]."],
    "Pleural Effusion": ["No [[pleural effusion]].", "No large [[pleural effusion]].",
                         "There is no [[pleural effusion]].", "No [[effusion]] is seen."],
    "Pleural Other": ["No [[pleural thickening]]."],
    "Pneumonia": ["No evidence of [[pneumonia]].", "No radiographic evidence of [[pneumonia]].",
                  "No findings to suggest [[pneumonia]]."],
    "Pneumothorax": ["No [[pneumothorax]].", "There is no [[pneumothorax]].", "No [[pneumothorax]] is seen."],
    "Support Devices": ["Interval removal of the [[endotracheal tube]].",
                        "The [[nasogastric tube]] has been removed."],
}
# Combined negations as in "There is no focal consolidation, pleural effusion or pneumothorax."
LIST_NEGATION_FORMS = ("There is no {items}.", "No {items}.", "Without {items}.")
LIST_NEGATION_TERMS = {
    "Consolidation": "focal [[consolidation]]",
    "Pleural Effusion": "[[pleural effusion]]",
    "Pneumothorax": "[[pneumothorax]]",
    "Edema": "pulmonary [[edema]]",
    "Pneumonia": "[[pneumonia]]",
}
NORMAL_IMPRESSIONS = [
    "No acute cardiopulmonary process.",
    "No acute cardiopulmonary abnormality.",
    "No acute intrathoracic process.",
    "No acute findings in the chest.",
    "Normal chest radiograph.",
]
FILLER_FINDINGS = [
    "The lungs are clear.",
    "Lungs are well expanded and clear.",
    "Hilar contours are unremarkable.",
    "Osseous structures are unremarkable.",
    "The visualized upper abdomen is unremarkable.",
    "Mild degenerative changes in the thoracic spine.",
    "No free air below the right hemidiaphragm.",
]
# Indications never name a finding; a few complaints correlate with a syndrome, weakly.
INDICATION_COMPLAINTS = [
    "shortness of breath", "cough", "chest pain", "dyspnea", "hypoxia", "fever", "weakness",
    "concern for acute process", "preop evaluation", "follow up", "altered mental status",
    "abdominal pain", "syncope", "tachycardia", "fatigue",
]
SYNDROME_COMPLAINTS = {
    "heart_failure": ["leg swelling", "worsening dyspnea on exertion", "weight gain and orthopnea",
                      "hx CHF, increasing dyspnea"],
    "infection": ["fever and cough", "productive cough", "fever, elevated white count", "cough and chills"],
    "postop": ["status post CABG", "post procedure", "respiratory failure", "check position"],
    "trauma": ["fall from standing", "chest wall pain after fall", "motor vehicle collision", "rib pain"],
    "oncology": ["weight loss", "staging", "hemoptysis", "smoker with weight loss"],
    "chronic": ["COPD, worsening dyspnea", "chronic cough", "hx of smoking"],
}

SEV_ADJ = {"mild": "mild", "moderate": "moderate", "severe": "severe"}
SEV_ADV = {"mild": "mildly", "moderate": "moderately", "severe": "markedly"}
SIZE_WORDS = {"mild": ("small", "trace"), "moderate": ("moderate", "small-to-moderate"),
              "severe": ("large", "moderate-to-large")}
ZONE_WORDS = {"upper": ("upper lobe", "upper lung"), "middle": ("mid lung", "perihilar region"),
              "lower": ("lower lobe", "lung base")}
ZONE_WORDS_BILATERAL = {"upper": ("upper lobes", "upper lungs"), "middle": ("mid lungs", "perihilar regions"),
                        "lower": ("lower lobes", "lung bases")}
NTH = ("fifth", "sixth", "seventh", "eighth", "ninth")

EXAMINATIONS = {
    "PA_LAT": ("CHEST (PA AND LAT)", "Chest PA and lateral"),
    "PA": ("CHEST (PA)", "Chest PA"),
    "AP": ("CHEST (PORTABLE AP)", "Portable AP chest radiograph"),
    "AP_LAT": ("CHEST (PA AND LAT)", "Chest AP and lateral"),
}
INDICATION_HEADERS = ("INDICATION", "INDICATION", "INDICATION", "HISTORY", "REASON FOR EXAM",
                      "CLINICAL HISTORY")
IMPRESSION_HEADERS = ("IMPRESSION", "IMPRESSION", "IMPRESSION", "IMPRESSION", "IMPRESSION",
                      "FINDINGS AND IMPRESSION", "CONCLUSION", "Impression")

