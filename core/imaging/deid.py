"""DICOM header de-identification: PS3.15 Annex E Basic Application Level Confidentiality
Profile (actions D/Z/X/K/C/U, via dicom-anonymizer's tables of the 2024b standard), with the
options Retain Longitudinal Temporal Information with Modified Dates (a per-patient date shift)
and Retain Device Identity.

UIDs are remapped with a keyed hash (HMAC-SHA-256 under the de-identification key), so the same
study gives the same new UIDs on every run and across files; patient ids become keyed
pseudonyms. Private tags are removed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from dicomanonymizer import simpledicomanonymizer as sda
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

PROFILE = "PS3.15 Annex E Basic Application Level Confidentiality Profile"
# Retain Device Identity Option: the attributes the option keeps (PS3.15 Table E.1-1, column "Rtn. Dev. Id.")
DEVICE_TAGS = [
    (0x0018, 0x1000),  # DeviceSerialNumber
    (0x0018, 0x1002),  # DeviceUID
    (0x0018, 0x1004),  # PlateID
    (0x0018, 0x1005),  # GeneratorID
    (0x0018, 0x1007),  # CassetteID
    (0x0018, 0x1008),  # GantryID
    (0x0018, 0x700A),  # DetectorID
    (0x0008, 0x1010),  # StationName
    (0x0008, 0x0070),  # Manufacturer
    (0x0008, 0x1090),  # ManufacturerModelName
    (0x0018, 0x1020),  # SoftwareVersions
]


@dataclass(frozen=True)
class DeidOptions:
    retain_dates_shifted: bool = False
    retain_device_identity: bool = False

    def describe(self) -> str:
        """Fits DeidentificationMethod (LO, 64 chars); the code sequence carries the details."""
        extras = (" +ModifiedDates" if self.retain_dates_shifted else "") + \
                 (" +DeviceIdentity" if self.retain_device_identity else "")
        return "PS3.15 E.1 Basic" + extras


def keyed_uid(key: bytes, uid: str) -> str:
    """A stable new UID under the 2.25 root (a UUID-derived decimal), keyed so it cannot be
    reversed or recomputed without the key."""
    digest = hmac.new(key, b"uid|" + uid.strip().encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def pseudonym(key: bytes, patient_id: str) -> str:
    return "ANON-" + hmac.new(key, b"pid|" + patient_id.strip().encode(), hashlib.sha256).hexdigest()[:12].upper()


def date_shift_days(key: bytes, patient_id: str) -> int:
    """Per-patient shift of -3650..-1 days: intervals between a patient's studies survive."""
    h = int.from_bytes(hmac.new(key, b"shift|" + patient_id.strip().encode(), hashlib.sha256).digest()[:4], "big")
    return -(1 + h % 3650)


def _shift_da(value: str, days: int) -> str:
    try:
        return (datetime.strptime(value.strip()[:8], "%Y%m%d").date() + timedelta(days=days)).strftime("%Y%m%d")
    except ValueError:
        return ""


def _shift_dt(value: str, days: int) -> str:
    v = value.strip()
    if len(v) < 8:
        return ""
    head = _shift_da(v[:8], days)
    return head + v[8:] if head else ""


def deidentify(ds: Dataset, key: bytes, options: DeidOptions = DeidOptions(),
               pixels_cleaned: bool = False) -> None:
    """De-identify `ds` in place (header only; pixel text is the detector's and sealing's job)."""
    patient_id = str(ds.get("PatientID", "") or "")
    rules = sda.initialize_actions_2024b()

    def uid_action(dataset, tag):
        el = dataset.get(tag)
        if el is None or el.value in (None, ""):
            return
        if el.VM > 1:
            el.value = [keyed_uid(key, str(v)) for v in el.value]
        else:
            el.value = keyed_uid(key, str(el.value))

    def uid_or_delete(dataset, tag):
        el = dataset.get(tag)
        if el is not None and el.VR == "UI":
            uid_action(dataset, tag)
        else:
            sda.delete_or_empty_or_replace(dataset, tag)

    for tag, action in list(rules.items()):
        if action is sda.replace_UID:
            rules[tag] = uid_action
        elif action is sda.delete_or_empty_or_replace_UID:
            rules[tag] = uid_or_delete

    if options.retain_dates_shifted:
        days = date_shift_days(key, patient_id or "unknown")

        def shift_action(dataset, tag, _orig=None):
            el = dataset.get(tag)
            if el is None or el.value in (None, ""):
                return
            if el.VR == "DA":
                el.value = _shift_da(str(el.value), days)
            elif el.VR == "DT":
                el.value = _shift_dt(str(el.value), days)
            # TM values are kept: a time of day alone does not identify once the date moved

        for el in ds.iterall():
            if el.VR in ("DA", "DT", "TM") and (el.tag.group, el.tag.element) in rules:
                rules[(el.tag.group, el.tag.element)] = shift_action
    if options.retain_device_identity:
        for tag in DEVICE_TAGS:
            rules[tag] = sda.keep

    sda.anonymize_dataset(ds, extra_anonymization_rules=None, delete_private_tags=True,
                          base_rules_gen=lambda: rules)
    _valid_dummies(ds)
    pid = pseudonym(key, patient_id) if patient_id else "ANON"
    ds.PatientID = pid
    ds.PatientName = pid
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "MedShield: " + options.describe()
    codes = [("113100", "Basic Application Confidentiality Profile")]
    if options.retain_dates_shifted:
        codes.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
    if options.retain_device_identity:
        codes.append(("113109", "Retain Device Identity Option"))
    seq = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        seq.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(seq)
    if pixels_cleaned:
        ds.BurnedInAnnotation = "NO"
    if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta and "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


DUMMY_DATE = "19000101"  # dicom-anonymizer's dummy "00010101" is not a valid DA for validators (dciodvfy)


def _valid_dummies(ds: Dataset) -> None:
    """Replace the anonymizer's dummy dates/times (year 0001) with valid, obviously dummy values."""
    for el in ds.iterall():
        if el.VR not in ("DA", "DT") or el.value in (None, ""):
            continue
        vals = list(el.value) if el.VM > 1 else [el.value]
        fixed = [DUMMY_DATE + str(v)[8:] if str(v).startswith("0001") else v for v in vals]
        if fixed != vals:
            el.value = fixed if el.VM > 1 else fixed[0]


def header_only(ds: Dataset) -> Dataset:
    """A copy of the data set without its pixel data (what is sealed for a faithful restore)."""
    import copy

    out = copy.deepcopy(ds)
    for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if kw in out:
            del out[kw]
    return out

