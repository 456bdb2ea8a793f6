"""The line decision: header values of the same file in every printed form, PHI rules, technical
vocabulary, and the default that seals what is not positively technical."""

from __future__ import annotations

from datetime import date

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from core.imaging.phitext import HeaderValues, classify, match_header, parse_dates, parse_times, technical


def header(**values) -> HeaderValues:
    hv = HeaderValues()
    for k, v in values.items():
        hv.add(k, v)
    return hv


@pytest.mark.parametrize("line", ["DOE^JOHN", "John Doe", "DOE, John", "doe john", "Pt: JOHN DOE  45Y", "D0E JOHN"])
def test_patient_name_in_any_order_and_case(line):
    assert match_header(line, header(PatientName="DOE^JOHN^A")) == "PatientName"


def test_long_names_tolerate_one_ocr_slip_and_short_names_do_not_match_inside_words():
    hv = header(PatientName="MONTGOMERY^ELIZABETH")
    assert match_header("MONTGOMERV ELIZABETH", hv) == "PatientName"
    assert match_header("Elizabelh", hv) == "PatientName"
    assert match_header("LYMPH NODE", hv) is None
    assert match_header("JOHNSON", header(PatientName="DOE^JOHN")) is None


@pytest.mark.parametrize("line", ["20170312", "2017-03-12", "03/12/2017", "12.03.2017", "12-Mar-2017", "Mar 12 2017",
                                  "12 March 2017", "DOB: 12/03/17", "12MAR2017", "2017/03/12 14:02"])
def test_dates_in_every_common_printed_form(line):
    hv = header(PatientBirthDate="20170312")
    assert match_header(line, hv) == "PatientBirthDate", line
    assert date(2017, 3, 12) in parse_dates(line)


def test_other_dates_and_measurements_are_not_the_header_date():
    hv = header(StudyDate="20170312")
    for line in ["13/03/2017", "1.06 cm", "Mag 1.06", "3/3/4", "W:400 L:40", "11cm"]:
        assert match_header(line, hv) is None, line


def test_ids_accession_and_other_ids_with_ocr_confusions():
    hv = header(PatientID="AB123456", AccessionNumber="ACC9876543", OtherPatientIDs=["XY-77-31", "Z999"])
    assert match_header("ID: AB123456", hv) == "PatientID"
    assert match_header("MRN A8 I23456", hv) == "PatientID"  # B->8, 1->I, spaces
    assert match_header("ACC 9876543", hv) is None or match_header("ACC 9876543", hv) == "AccessionNumber"
    assert match_header("Accession ACC9876543", hv) == "AccessionNumber"
    assert match_header("XY7731", hv) == "OtherPatientIDs"
    assert match_header("Z999", hv) == "OtherPatientIDs"
    assert match_header("kVp 120", hv) is None


def test_institution_physicians_station_and_times():
    hv = header(InstitutionName="Baptist Medical Center", ReferringPhysicianName="SMITH^ALICE",
                StationName="US-ROOM7", StudyTime="142825.000", PatientAge="045Y")
    assert match_header("BAPTIST MED CTR", hv) == "InstitutionName"
    assert match_header("Ref: Dr. Smith", hv) == "ReferringPhysicianName"
    assert match_header("2:28 PM", hv) == "StudyTime"
    assert match_header("14:28:25", hv) == "StudyTime"
    assert match_header("45Y", hv) == "PatientAge"
    assert match_header("Medical Center", hv) is None  # generic words alone are not this institution


def test_header_values_from_a_dataset_with_sequences_never_print():
    ds = Dataset()
    ds.PatientName = "ROE^RICHARD"
    ds.PatientID = "PID-5551234"
    ds.StudyDate = "19991231"
    item = Dataset()
    item.PatientID = "ALT-0042"
    ds.OtherPatientIDsSequence = Sequence([item])
    hv = HeaderValues.from_dataset(ds)
    assert match_header("Richard Roe", hv) == "PatientName"
    assert match_header("ALT0042", hv) == "PatientID"
    assert match_header("31.12.1999", hv) == "StudyDate"
    assert "ROE" not in repr(hv) and "5551234" not in repr(hv) and "ROE" not in str(hv)


@pytest.mark.parametrize("line", ["kVp 80", "mAs 2.5", "TIS<0.4 MI=0.8 AO=100%", "Depth 16cm", "L", "R", "PORTABLE",
                                  "SEMI-UPRIGHT", "C5-1", "28Hz", "Gn 60", "3/3/4", "W:400 L:40", "Se: 3", "Im: 12/40",
                                  "LYMPH NODE", "+ Cist Mag 1.06 cm", "TIS0.4 MI 1.4", "65bpm", "Adult Echo",
                                  # run together by the recogniser, or misread
                                  "WW1750WL26", "W:838L:-609", "WW 1500WL-600", "TIS<0.4MI=0.8A0=100%", "mAs16",
                                  "Depth 7om", "W:421 L;270", "5.0 R15 G66 C6 A2", "M-MODE", "b=1009", "Im:172/533",
                                  "5e:3"])
def test_technical_lines_stay_visible(line):
    d = classify(line, 0.95)
    assert (d.label, d.reason) == ("annotation", "rule:technical"), line


@pytest.mark.parametrize("line,reason", [
    ("Born 12/04/2024", "rule:date"), ("2:56:22 PM", "rule:time"), ("45Y F", "rule:age-sex"), ("[M]", "rule:age-sex"),
    ("F/39", "rule:age-sex"), ("Pat ID 162-04-6610", "rule:id"), ("CH5397431", "rule:id"), ("630P630", "rule:id"),
    ("Dr. Okafor", "rule:name"), ("Ref: Berger", "rule:name"), ("SMITH^JO", "rule:name"), ("Margaret", "rule:name"),
    ("Nedap Hospital", "rule:institution"), ("Univ. Clinic Bonn", "rule:institution"),
    ("12 Baker Street", "rule:address"), ("Qwxzt", "default"), ("19", "default"), ("F", "default"),
])
def test_phi_rules_and_the_default(line, reason):
    d = classify(line, 0.95)
    assert (d.label, d.reason) == ("phi", reason), line


def test_a_header_match_wins_over_technical_and_an_unsure_reading_is_never_technical():
    assert classify("LONG", 0.99).label == "annotation"
    assert classify("LONG", 0.99, header(PatientName="LONG^MEI")).reason == "header:PatientName"
    assert classify("kVp 80", 0.5).label == "phi"  # not read surely enough to leave it visible
    assert classify("日本", 0.9).reason == "unreadable"


def test_times_and_dates_are_parsed_not_guessed():
    assert parse_times("2:56:22 PM") == {(14, 56)}
    assert parse_times("1.06 cm") == set()
    assert parse_dates("5/25/2011") == {date(2011, 5, 25)}
    assert parse_dates("12/03/2017") == {date(2017, 3, 12), date(2017, 12, 3)}
    assert not technical("19") and technical("19 cm")


@pytest.mark.parametrize("line", ["DOB:01 July198", "JUL17", "45M", "630P630", "78DR78", "Se 630P630", "RA", "M 26",
                                  "Ex: 2411", "AGE45", "F", "0118", "22G22", "MRN 4471902",
                                  # misreads of PHI: BM -> B71, [M] -> [M1], M/78 -> M78, 13.11.1989 -> 1311.1909
                                  "B71", "[M1]", "M78", "1311.1909", "00 74.5848", "1735:21", "[0]", "(19)"])
def test_what_is_never_technical(line):
    """Words followed by numbers are not parameters unless the word is one; IDs split at letter seams
    stay IDs; initials, sex letters and bare numbers are not positively technical."""
    assert classify(line, 0.99).label == "phi", line
