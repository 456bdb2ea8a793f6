"""What a line of burned-in text is: patient information (PHI) or technical annotation.

`classify(text, score, header)` decides from the text an OCR read:
1. **header match**: the line holds a value of the same file's DICOM header (PatientName in any order
   and case, PatientID, OtherPatientIDs, AccessionNumber, dates in DA or any common printed format,
   times, InstitutionName, physicians, StationName...): PHI, reason ``header:<Keyword>``;
2. **PHI rules**: a date, a time, an ID-like token, an age/sex tag (``rule:date`` ...);
3. **technical**: every token is technical vocabulary (kV, mAs, TIS/MI, depth in cm, L/R markers,
   PORTABLE, SEMI-UPRIGHT, probe names, measurements...): annotation, reason ``rule:technical``;
4. **name / institution / address rules** (a first-name/surname list, "LAST^First", "Dr." prefixes,
   hospital words, street words): PHI;
5. otherwise PHI, reason ``default``: the default policy seals every line that is not positively
   technical.

Header values are PHI themselves: they are held in memory only, never logged, never stored.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from core.imaging.phiheader import (GENERIC_PLACE_WORDS, HeaderValues, alnum, confusable, fold,  # noqa: F401
                                    match_header, parse_dates, parse_times, words)

# --------------------------------------------------------------------------------------------
# header-free rules

_AGE_SEX = re.compile(r"(?<![A-Z0-9.])(\d{1,3}\s?(Y|YR|YRS|YO|Y/O|J|ANS|JAHRE|MO|MOS|WK|WKS)(?![A-Z0-9])"
                      r"|[\[(]\s?[MFO0]\w?\s?[\])]|[MF]\s?/\s?\d{1,3}|\d{1,3}\s?/\s?[MF](?![A-Z])|AGE\s?:?\s?\d{1,3}"
                      r"|^\s*[MF]\s?\d{1,3}\s*$"
                      r"|SEX\s?:?\s?[MFO](?![A-Z]))")
_ID_PREFIX = re.compile(r"(?<![A-Z])(ID|MRN|PID|PAT|PATIENT|ACC|ACCESSION|ACCN|NHS|SSN|MR|CASE|EXAM|STUDY|NO|NR|NUM)"
                        r"(?![A-Z])\s?[#:.]?\s?[A-Z]{0,3}\d{3,}")
_PERSON_PREFIX = re.compile(r"(?<![A-Z])(DR|DOCTOR|PROF|REF|REFERRING|PHYS|PHYSICIAN|NAME|PATIENT|PT|OPERATOR|OP|TECH|"
                            r"MR|MRS|MS|MISS|HERR|FRAU|MME|SR|SRA|SIG)\b\.?\s?:?\s?[A-Z]")
_PLACE_WORDS = {"HOSPITAL", "HOSP", "HOSPITALS", "MEDICAL", "CENTER", "CENTRE", "CTR", "CLINIC", "CLINICS", "KLINIK",
                "KLINIKUM", "CLINIQUE", "CLINICA", "OSPEDALE", "ZIEKENHUIS", "UNIVERSITY", "UNIV", "UNIVERSITAT",
                "INFIRMARY", "INSTITUTE", "INSTITUT", "HEALTH", "HEALTHCARE", "RADIOLOGY", "IMAGING", "SPITAL",
                "POLYCLINIC", "PRAXIS", "MEDICINE", "CHU", "NHS", "TRUST", "FOUNDATION"}
_STREET_WORDS = {"STREET", "ST", "ROAD", "RD", "AVENUE", "AVE", "BLVD", "BOULEVARD", "LANE", "LN", "DRIVE", "WAY",
                 "STRASSE", "STR", "WEG", "PLATZ", "RUE", "VIA", "CALLE", "PLAZA", "STRAAT", "LAAN", "SUITE", "APT",
                 "PO", "BOX", "ZIP"}


def _long_digit_run(text: str) -> bool:
    """Five or more digits in a row once the dashes, dots and spaces of ID formats (470-76-7799, 12 345 678)
    are dropped: IDs, MRNs, phone numbers. A decimal number (1234.5) or a ratio (172/533) is not one."""
    t = fold(text)
    t = re.sub(r"(?<=\d)[-_#](?=\d)", "", t)
    t = re.sub(r"(?<=\d) (?=\d{3}\b)", "", t)
    for run in re.findall(r"(?<![\d.,])\d{5,}(?![.,]\d)", t):
        return bool(run)
    return False


def spaced(text: str) -> str:
    """Tokens the recogniser ran together split again at letter/digit seams: WW1750WL26 -> WW 1750 WL 26,
    W:838L:609 -> W:838 L:609 (a unit stays with its number: 95HZ -> 95HZ; A0=100% stays whole)."""
    out = []
    for n, tok in enumerate(fold(text).split(" ")):
        # parameter runs start with a name (WW1750WL26), or follow one (WW 1500WL-600); a token alone that
        # starts with digits is how IDs look (630P630, 78DR78): left whole
        if tok[:1].isalpha():
            tok = re.sub(r"(?<=\d)(?=[A-Z]{1,5}[:=<>]?[-+]?\d)|(?<=\d)(?=[A-Z]:)", " ", tok)
            tok = re.sub(r"(?<=[A-Z])(?=\d)(?!\d*[:=<>])", " ", tok)
        elif n > 0 and out[0][:1].isalpha():  # 1500WL-600 after WW: split only before a known parameter name
            tok = re.sub(r"(?<=\d)(?=([A-Z]{2,5})[:=<>]?[-+]?\d)",
                         lambda m: " " if m.group(1) in _TECH_WORDS else "", tok)
        out.append(tok)
    return " ".join(out)


def _mixed_id(text: str) -> bool:
    """A token mixing letters and at least three digits, five characters or more (CH5397431, 630P630,
    44CG43): how IDs and accession numbers look, and how no technical label does, even run together."""
    for tok in re.split(r"\s+", fold(text)):
        t = re.sub(r"[^0-9A-Z]", "", tok)
        digits = sum(c.isdigit() for c in t)
        if len(t) >= 5 and digits >= 3 and digits < len(t) and not _technical_token(tok) and not technical(spaced(tok)):
            return True
    return False


@functools.lru_cache(maxsize=1)
def person_names() -> frozenset[str]:
    """First names and surnames of many locales (Faker's person lists, MIT), folded, 3+ letters."""
    import importlib

    out: set[str] = set()
    for loc in ("en_US", "en_GB", "en_IN", "de_DE", "fr_FR", "es_ES", "es_MX", "it_IT", "nl_NL", "pt_BR", "pt_PT",
                "pl_PL", "sv_SE", "da_DK", "no_NO", "fi_FI", "cs_CZ", "tr_TR", "ro_RO", "hu_HU"):
        try:
            provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        except (ImportError, AttributeError):  # pragma: no cover - a Faker without that locale
            continue
        for attr in ("first_names", "first_names_male", "first_names_female", "last_names"):
            for n in getattr(provider, attr, None) or ():
                for w in words(n):
                    if len(w) >= 3:
                        out.add(w)
    return frozenset(out - _TECH_WORDS)


# --------------------------------------------------------------------------------------------
# technical annotation: what identifies nobody

_TECH_WORDS = frozenset("""
L R A P H S I LT RT LEFT RIGHT AP PA LAT LATERAL LL RL OBL OBLIQUE AX AXIAL COR CORONAL SAG SAGITTAL TRANS
TRANSVERSE LONG LONGITUDINAL PORTABLE PORT SUPINE PRONE ERECT UPRIGHT SEMI SEMIUPRIGHT STANDING SITTING DECUBITUS
LLD RLD WEIGHT BEARING WB INSP INSPIRATION EXP EXPIRATION HFS FFS HFP FFP HEAD FEET FIRST GRID NOGRID SCOUT LOCALIZER
TOPOGRAM SURVIEW STND STD BONE LUNG SOFT TISSUE MEDIASTINUM BRAIN ABD ABDOMEN PELVIS CHEST THORAX KIDNEY KIDNEYS
RENAL LIVER SPLEEN GB GALLBLADDER PANCREAS BLADDER UTERUS OVARY THYROID BREAST LYMPH NODE NODES CAROTID AORTA
HEART CARDIAC ECHO ADULT PEDS PEDIATRIC FETAL OB GYN TV TA NECK SPINE CSPINE LSPINE TSPINE KNEE HIP HAND WRIST FOOT
ANKLE ELBOW SHOULDER SKULL SINUS FEMUR TIBIA HUMERUS TESTIS SCROTUM PROSTATE VENOUS ARTERIAL DOPPLER VASCULAR MSK
SMALL PARTS T1 T2 PD FLAIR DWI ADC STIR SWI GRE TSE FSE SE IR EPI MRA TOF FS FATSAT POST PRE CONTRAST GAD C+ C-
PLAIN DELAYED MIP MPR VR VRT RECON CINE MOVIE LOOP CLIP FRAME FRAMES SERIES SER IMAGE IMG IM SLICE SL THK LOC POS
TABLE FOV MATRIX NEX ETL TE TR TI FA BW KV KVP MA MAS MAS MSEC MS SEC S EI DI DAP DOSE CTDI DLP SID SOD FILTER
MAG ZOOM PAN TILT ROT ROTATION W L WW WL WC C WIN LEVEL WINDOW CENTER INVERT GAIN GN DR DYN FR FPS HZ KHZ MHZ FREQ
FRQ DEPTH D FOCUS FOC PWR POWER PRF WF SV ANGLE MI TIS TIB TIC TI AO THI HGEN GEN PEN RES HRES HPEN CF CFM PW CW
PD PDI MMODE M-MODE B-MODE B BMODE 2D 3D 4D HD COLOR COLOUR FLOW PERSIST PERSISTENCE SPECKLE SRI XRES CRI SONOCT COMPOUND
LOW MID HIGH MED NORM NORMAL ON OFF AUTO MAN MANUAL DIST AREA CIRC VOL VOLUME DIAM DIAMETER INDEX LENGTH WIDTH
HEIGHT PSV EDV RI PI SD VEL VELOCITY PG MPG VTI HR EF LVEF FS CO SV TAPSE E A DT IVRT LA LV RA RV IVS LVPW LVID
LVIDD LVIDS ASC AO ROOT ARCH DESC SINUS MV AV TV PV CM MM UM KG G MG ML CC DB BPM MMHG CMS MS SEC FT IN
CIST CYST MASS LESION NODULE STONE CALC GEST SAC CRL BPD HC AC FL EFW GA EDD LMP AFI MVP FHR NT YS
PROBE TRANSDUCER LINEAR CURVED SECTOR PHASED ENDO ECHO STRESS REST PEAK BASELINE PRE POST
NOTE MARK MARKER SCALE RULER CALIPER CAL CURSOR ROI ANNOTATION ANT POST SUP INF MED LAT PROX DIST MID UPPER LOWER
OF THE AND TO VIEW PROJ PROJECTION ORIENTATION ERECTUS ARM ARMS UP DOWN WITH WITHOUT BILAT BILATERAL UNILAT
DEG DEGREE DEGREES X Y Z ACQ ACQUISITION STATIC DYNAMIC GATED ANTERIOR POSTERIOR ROUTINE PROTOCOL
""".split())
# units (not M, S or G alone: "45M" may be an age in months, a sex and an age, or part of an ID)
_UNITS = r"(%|CM|MM|UM|MS|SEC|MSEC|HZ|KHZ|MHZ|DB|BPM|KV|KVP|MA|MAS|CM2|CM3|MM2|ML|CC|CM/S|MM/S|M/S|MMHG|DEG|°|FPS|X|KG|MGY|GY|GYCM2|UGYM2|DGYCM2|MSV)"
_NUMBER = r"[+-]?\d{1,4}(?:[.,]\d{1,3})?"
_TECH_TOKEN = [
    re.compile(rf"^{_NUMBER}{_UNITS}$"),  # 5cm, 28HZ, 100%, 1.06CM
    re.compile(rf"^{_NUMBER}$"),  # a bare number (technical() wants more than numbers on a line)
    re.compile(r"^\d{1,3}/\d{1,3}(?:/\d{1,3})?$|^\d{1,2}:\d{1,2}$"),  # 3/3/4, 127/128, 12/40, 1:2 (not 1735:21)
    re.compile(r"^\d{1,3}[.,]\d{1,3}$"),  # a measurement: 1.06, 3.3
    re.compile(r"^X\d{1,2}(?:[.,]\d)?$"),  # zoom x1.5
    re.compile(r"^[A-Z]{1,2}\d{1,2}-\d{1,2}[A-Z]?$"),  # probe names: C5-1, S5-1, L12-5
    re.compile(r"^[+\-*#<>=~^/\\|.:°]+$"),  # marks: +, *, --, >
]


_UNIT_MISREADS = re.compile(r"(?<=\d)(OM|EM|CN|GM)$")  # the recogniser's takes on "cm"


# a parameter and its value run together: TIS0.4, MI=0.8, AO=100% (read A0), C61, W:400, FR25HZ, GN60; the name
# is one letter or a known parameter, never any word (DOB:01 or JULY198 are not technique)
_PARAM = re.compile(rf"^(?P<name>[A-Z][A-Z0]{{0,4}})[:=<>]?{_NUMBER}{_UNITS}?$")


_PARAM_FRACTION = re.compile(r"^(?P<name>[A-Z]{1,4}):?\d{1,3}/\d{1,4}$")  # IM:12/40, IMG:172/533
_DIGIT_LETTER = {"5": "S", "0": "O", "1": "I", "8": "B"}


def _technical_token(tok: str, in_line: bool = False, in_line_retry: bool = False) -> bool:
    t = _UNIT_MISREADS.sub("CM", fold(tok).replace(";", ":").strip(",;:()[]{}'\"+*"))
    if not t:
        return True
    if t in _TECH_WORDS:
        return True
    if any(r.match(t) for r in _TECH_TOKEN):
        return True
    if (m := _PARAM.match(t)) and ((len(m["name"]) > 1 and m["name"].replace("0", "O") in _TECH_WORDS)
                                   or (len(m["name"]) == 1 and (in_line or t[1:2] in "=:"))):
        return True  # one letter and a value (C61, G66, R15) only among other values: alone, M78 or B71 is no setting
    if (m := _PARAM_FRACTION.match(t)) and m["name"] in _TECH_WORDS:
        return True
    if len(t) > 1 and t[0] in _DIGIT_LETTER and t[1].isalpha() and not in_line_retry:
        return _technical_token(_DIGIT_LETTER[t[0]] + t[1:], in_line, True)  # 5E:3 is SE:3 misread
    # compounds of words: SEMI-UPRIGHT, M-MODE, 2D/CF (numbers in pieces are not: 1311.1909 is no technique)
    parts = [p for p in re.split(r"[-/_]", t) if p]
    if len(parts) > 1 and all(p in _TECH_WORDS and not p.isdigit() for p in parts):
        return True
    return False


# two letters alone on a line are someone's initials unless they are one of these markers
_SHORT_ALONE = frozenset({"AP", "PA", "LT", "RT", "LL", "RL", "AX", "CF", "PW", "CW", "2D", "3D", "4D", "OB", "MI"})


def technical(text: str, _respaced: bool = False) -> bool:
    """Every token is technical vocabulary, and at least one is more than a bare number or a single
    mark: a lone "19" or "045" could be an age, a day or part of an ID, so it is not positively technical;
    nor are two letters alone (initials) unless a well-known marker."""
    toks = [t for t in re.split(r"\s+", fold(text)) if t]
    if len(toks) == 1 and re.fullmatch(r"[A-Z]{2}", toks[0].strip(".,:;()[]")) and \
            toks[0].strip(".,:;()[]") not in _SHORT_ALONE:
        return False
    if _respaced and any(re.fullmatch(r"[A-Z]", t) for t in toks):
        return False  # B71 split into B 71 is still one letter and a number: no setting on its own
    if not toks or not all(_technical_token(t, len(toks) > 1) for t in toks):
        return not _respaced and spaced(text) != fold(text) and technical(spaced(text), True)
    return any(not re.fullmatch(r"[+-]?\d+|[+\-*#<>=~^/\\|.:°]+", t.strip(",;:()[]{}'\"")) for t in toks)


# --------------------------------------------------------------------------------------------
# the decision


@dataclass(frozen=True)
class Decision:
    label: str  # "phi" or "annotation"
    reason: str  # header:<Keyword> | rule:<kind> | default | unreadable
    confidence: float


READ_SURE = 0.6  # a reading at least this confident can make a line technical (and so visible)


def _latin(text: str) -> str:
    """The readable Latin part of a reading (the recogniser also knows Chinese, which no scanner here prints)."""
    return "".join(c for c in text if ord(c) < 0x250 or c in "°µ")


def classify(text: str, score: float, header: HeaderValues | None = None) -> Decision:
    """See the module docstring. `score` is the recogniser's confidence in `text`."""
    t = _latin(text).strip()
    if len(alnum(t)) == 0:
        return Decision("phi", "unreadable", 0.0)
    if (kw := match_header(t, header)):
        return Decision("phi", f"header:{kw}", 1.0)
    if parse_dates(t):
        return Decision("phi", "rule:date", score)
    if parse_times(t):
        return Decision("phi", "rule:time", score)
    if _AGE_SEX.search(fold(t)):
        return Decision("phi", "rule:age-sex", score)
    tech = score >= READ_SURE and technical(t)
    if _ID_PREFIX.search(fold(t)) or _long_digit_run(t) or (_mixed_id(t) and not tech):
        return Decision("phi", "rule:id", score)
    if tech:
        return Decision("annotation", "rule:technical", score)
    ws = words(t)
    if any(w in _PLACE_WORDS for w in ws):
        return Decision("phi", "rule:institution", score)
    if any(w in _STREET_WORDS for w in ws) and any(c.isdigit() for c in t):
        return Decision("phi", "rule:address", score)
    if _PERSON_PREFIX.search(fold(t)) or "^" in t or any(w in person_names() for w in ws):
        return Decision("phi", "rule:name", score)
    return Decision("phi", "default", score)
