"""The burned-in text's own vocabulary for matching: text normalisation (case, accents, the digits OCR
mistakes letters for), dates and times in the forms scanners print them, and a DICOM header's PHI values
with the matcher that finds them in a line of text (core/imaging/phitext.py decides with it).
Header values are PHI themselves: they are held in memory only, never logged, never stored."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

# --------------------------------------------------------------------------------------------
# normalisation

_CONFUSE = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "|": "1", "!": "1", "Z": "2",
                          "S": "5", "B": "8", "G": "6", "T": "7"})


def fold(text: str) -> str:
    """Upper case, accents removed (Müller -> MULLER), whitespace collapsed."""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", t.upper()).strip()


def alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", fold(text))


def confusable(text: str) -> str:
    """Alphanumerics with the letters OCR confuses with digits mapped to them (O->0, I/L->1, S->5 ...)."""
    return alnum(text).translate(_CONFUSE)


def words(text: str) -> list[str]:
    return [w for w in re.split(r"[^0-9A-Z]+", fold(text)) if w]


def _near(a: str, b: str, max_edits: int) -> bool:
    """Levenshtein distance <= max_edits (small strings, early exit)."""
    if abs(len(a) - len(b)) > max_edits:
        return False
    if a == b:
        return True
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        if min(cur) > max_edits:
            return False
        prev = cur
    return prev[-1] <= max_edits


def _contains_near(hay: str, needle: str, max_subs: int) -> bool:
    """`needle` occurs in `hay` with at most `max_subs` substituted characters."""
    n = len(needle)
    if n == 0 or len(hay) < n:
        return False
    if needle in hay:
        return True
    if max_subs <= 0:
        return False
    for i in range(len(hay) - n + 1):
        if sum(a != b for a, b in zip(hay[i:i + n], needle)) <= max_subs:
            return True
    return False


# --------------------------------------------------------------------------------------------
# dates and times, in the forms scanners print them

_MONTHS = {"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10,
           "NOV": 11, "DEC": 12,
           # German, French, Spanish, Italian, Dutch abbreviations that differ
           "MAI": 5, "MRZ": 3, "MAE": 3, "OKT": 10, "DEZ": 12, "JANV": 1, "FEV": 2, "MARS": 3, "AVR": 4, "JUIN": 6,
           "JUIL": 7, "AOUT": 8, "ENE": 1, "ABR": 4, "AGO": 8, "DIC": 12, "GEN": 1, "MAG": 5, "GIU": 6, "LUG": 7,
           "SET": 9, "OTT": 10, "MRT": 3, "MEI": 5}
_MONTH_RE = r"(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|MAI|MRZ|OKT|DEZ|AVR|JUIN|JUIL|AOUT|ENE|ABR|AGO|DIC|MAG|GIU|LUG|SET|OTT|MRT|MEI)[A-Z]*\.?"
_NUM_DATE = re.compile(r"(?<!\d)(\d{1,4})\s?[-/.]\s?(\d{1,2})\s?[-/.]\s?(\d{2,4})(?!\d)")
_TEXT_DATE_DMY = re.compile(r"(?<!\d)(\d{1,2})[\s\-/.]*" + _MONTH_RE + r"(?:[\s\-/,]*(\d{4})|[\s\-]+(\d{2}))(?![\d.,])")
_TEXT_DATE_MDY = re.compile(r"(?<![A-Z])" + _MONTH_RE + r"[\s\-/]*(\d{1,2})(?:ST|ND|RD|TH)?[\s,\-/]+(\d{4})(?!\d)")
_COMPACT = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?!\d)")
_TIME = re.compile(r"(?<![\d.,])([01]?\d|2[0-3])\s?[:H]\s?([0-5]\d)(?:\s?:\s?([0-5]\d))?(?:\s?([AP])\.?M\.?)?(?![\d.,])")
_TIME_COMPACT = re.compile(r"(?<!\d)([01]\d|2[0-3])([0-5]\d)([0-5]\d)(?!\d)")


def _year(y: int) -> int:
    return y if y >= 100 else (2000 + y if y < 50 else 1900 + y)


def _valid(y: int, m: int, d: int) -> date | None:
    try:
        return date(_year(y), m, d) if 1850 <= _year(y) <= 2100 else None
    except ValueError:
        return None


def _month(name: str) -> int:
    name = name.rstrip(".")
    return _MONTHS.get(name[:4]) or _MONTHS[name[:3]]


def parse_dates(text: str) -> set[date]:
    """Every date the text may mean: 12/03/2017 gives both 12 March and 3 December."""
    t = fold(text)
    out: set[date] = set()
    for a, b, c in _NUM_DATE.findall(t):
        a_, b_, c_ = int(a), int(b), int(c)
        if len(a) == 4:  # YYYY-MM-DD
            out |= {x for x in [_valid(a_, b_, c_)] if x}
        elif len(c) in (2, 4):  # DD-MM-YYYY or MM-DD-YYYY
            out |= {x for x in (_valid(c_, b_, a_), _valid(c_, a_, b_)) if x}
    for d, mon, y4, y2 in _TEXT_DATE_DMY.findall(t):
        if (x := _valid(int(y4 or y2), _month(mon), int(d))):
            out.add(x)
    for mon, d, y in _TEXT_DATE_MDY.findall(t):
        if (x := _valid(int(y), _month(mon), int(d))):
            out.add(x)
    for y, m, d in _COMPACT.findall(t):
        if (x := _valid(int(y), int(m), int(d))):
            out.add(x)
    return out


def parse_times(text: str) -> set[tuple[int, int]]:
    """(hour, minute) of every time in the text, 24-hour (2:56 PM -> 14:56)."""
    out = set()
    for h, m, _s, ap in _TIME.findall(fold(text)):
        hh = int(h)
        if ap == "P" and hh < 12:
            hh += 12
        elif ap == "A" and hh == 12:
            hh = 0
        out.add((hh, int(m)))
    for h, m, _s in _TIME_COMPACT.findall(fold(text)):
        out.add((int(h), int(m)))
    return out


def _da(value: str) -> date | None:
    v = re.sub(r"\D", "", str(value))[:8]
    return _valid(int(v[:4]), int(v[4:6]), int(v[6:8])) if len(v) == 8 else None


def _tm(value: str) -> tuple[int, int] | None:
    v = re.sub(r"[^\d]", "", str(value).split(".")[0])
    if len(v) >= 4 and int(v[:2]) < 24 and int(v[2:4]) < 60:
        return int(v[:2]), int(v[2:4])
    return None


# --------------------------------------------------------------------------------------------
# the header's PHI values

NAME_TAGS = ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "ReferringPhysicianName",
             "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName", "RequestingPhysician",
             "PhysiciansOfRecord", "ResponsiblePerson")
ID_TAGS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "IssuerOfPatientID", "MedicalRecordLocator",
           "AdmissionID", "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID",
           "DeviceSerialNumber", "PatientTelephoneNumbers")
DATE_TAGS = ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate")
DATETIME_TAGS = ("AcquisitionDateTime",)
TIME_TAGS = ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime")
PLACE_TAGS = ("InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName", "PatientAddress",
              "ReferringPhysicianAddress", "RegionOfResidence")
GENERIC_PLACE_WORDS = {"HOSPITAL", "HOSP", "MEDICAL", "MED", "CENTER", "CENTRE", "CTR", "CLINIC", "CLINICS", "KLINIK",
                       "KLINIKUM", "UNIVERSITY", "UNIV", "GENERAL", "HEALTH", "HEALTHCARE", "RADIOLOGY", "IMAGING", "THE",
                       "OF", "AND", "DEPT", "DEPARTMENT", "INSTITUTE", "STATION", "ROOM", "SAINT", "ST", "DE", "DER", "LA"}


@dataclass
class HeaderValues:
    """PHI values of one file's header, in the forms the matcher compares. Never logged."""

    names: dict[str, set[str]] = field(default_factory=dict)  # keyword -> name parts (folded, len >= 2)
    ids: dict[str, set[str]] = field(default_factory=dict)  # keyword -> confusable alphanumerics (len >= 3)
    dates: dict[str, set[date]] = field(default_factory=dict)
    times: dict[str, set[tuple[int, int]]] = field(default_factory=dict)
    places: dict[str, set[str]] = field(default_factory=dict)  # keyword -> distinctive words (len >= 3)
    age: str | None = None  # "045Y" -> "45Y"

    def __repr__(self) -> str:  # values are PHI: a repr must never print them
        return f"HeaderValues({sum(map(len, self.names.values()))} name parts, {sum(map(len, self.ids.values()))} ids, ...)"

    def empty(self) -> bool:
        return not (self.names or self.ids or self.dates or self.times or self.places or self.age)

    def add(self, keyword: str, value) -> None:
        """Add one header value (a string, a PersonName, a list of them)."""
        if value is None:
            return
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            s = str(v).strip()
            if not s:
                continue
            if keyword in NAME_TAGS:
                parts = {p for p in words(s.replace("^", " ")) if len(p) >= 2}
                if parts:
                    self.names.setdefault(keyword, set()).update(parts)
            elif keyword in ID_TAGS:
                if len(c := confusable(s)) >= 3:
                    self.ids.setdefault(keyword, set()).add(c)
            elif keyword in DATE_TAGS:
                if (d := _da(s)):
                    self.dates.setdefault(keyword, set()).add(d)
            elif keyword in DATETIME_TAGS:
                if (d := _da(s[:8])):
                    self.dates.setdefault(keyword, set()).add(d)
                if len(s) >= 12 and (t := _tm(s[8:])):
                    self.times.setdefault(keyword, set()).add(t)
            elif keyword in TIME_TAGS:
                if (t := _tm(s)):
                    self.times.setdefault(keyword, set()).add(t)
            elif keyword in PLACE_TAGS:
                ws = {w for w in words(s) if len(w) >= 3}
                if ws:
                    self.places.setdefault(keyword, set()).update(ws)
            elif keyword == "PatientAge":
                m = re.fullmatch(r"0*(\d{1,3})([DWMY])", s.upper())
                if m:
                    self.age = m.group(1) + m.group(2)

    @classmethod
    def from_dataset(cls, ds) -> "HeaderValues":
        """The PHI values of a pydicom Dataset (top level and one level of sequences)."""
        hv = cls()
        keys = NAME_TAGS + ID_TAGS + DATE_TAGS + DATETIME_TAGS + TIME_TAGS + PLACE_TAGS + ("PatientAge",)

        def visit(d, depth: int) -> None:
            for kw in keys:
                try:
                    v = d.get(kw)
                except Exception:  # a malformed element: skip it, never fail protection on it
                    continue
                if v is not None and not hasattr(v, "value"):
                    hv.add(kw, list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else v)
            if depth < 2:
                for elem in d:
                    if getattr(elem, "VR", None) == "SQ":
                        for item in elem.value or []:
                            visit(item, depth + 1)

        visit(ds, 0)
        return hv


def match_header(text: str, hv: HeaderValues | None) -> str | None:
    """The header keyword whose value the line shows, or None."""
    if hv is None or hv.empty():
        return None
    ws = words(text)
    if not ws:
        return None
    for kw, parts in hv.names.items():
        for p in parts:
            for w in ws:
                if (len(p) >= 3 and _near(w, p, 1 if len(p) >= 5 else 0)) or (len(p) == 2 and w == p and len(ws) <= 3):
                    return kw
    conf = confusable(text)
    for kw, ids in hv.ids.items():
        for v in ids:
            if len(v) >= 4 and _contains_near(conf, v, 1 if len(v) >= 6 else 0):
                return kw
            if len(v) == 3 and v in {confusable(w) for w in ws}:
                return kw
    if hv.dates:
        found = parse_dates(text)
        for kw, ds in hv.dates.items():
            if found & ds:
                return kw
    if hv.times:
        found_t = parse_times(text)
        for kw, ts in hv.times.items():
            if found_t & ts:
                return kw
    for kw, place in hv.places.items():
        distinctive = place - GENERIC_PLACE_WORDS
        for w in ws:
            if len(w) >= 4 and any(_near(w, p, 1 if len(p) >= 6 else 0) for p in distinctive):
                return kw
        if len(place) >= 2 and place <= set(ws):
            return kw
    if hv.age and re.search(rf"(?<!\d)0*{hv.age[:-1]}\s?{hv.age[-1]}", fold(text)):
        return "PatientAge"
    return None
