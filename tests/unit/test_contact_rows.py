"""Contacts, pure: field checks, the phone fast path against phonenumbers, CSV headers, rows and
record boundaries."""

from __future__ import annotations

import codecs
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from shared.domain import contacts
from shared.domain.contact_csv import (
    SNIFF_BYTES,
    Columns,
    CsvRecords,
    HeaderError,
    contact_id,
    guess_delimiter,
    line_of,
    map_header,
    skipped_column,
    split_at_record_end,
    validate_row,
)
from shared.domain.phone import InvalidPhone, to_e164


def _slow(raw: str, region: str | None) -> str | None:
    try:
        return to_e164.__wrapped__(raw, region)  # type: ignore[attr-defined]
    except InvalidPhone:
        return None


def _fast(raw: str, region: str | None) -> str | None:
    try:
        return contacts.e164(raw, region)
    except ValueError:
        return None


def test_the_e164_fast_path_agrees_with_phonenumbers_for_every_country_code():
    rnd = random.Random(7)
    for code in COUNTRY_CODE_TO_REGION_CODE:
        for length in range(1, 16):
            for _ in range(8):
                raw = f"+{code}" + "".join(rnd.choice("0123456789") for _ in range(length))
                assert _fast(raw, None) == _slow(raw, None), raw


@settings(max_examples=400, deadline=None)
@given(
    digits=st.text("0123456789", min_size=9, max_size=11),
    shape=st.sampled_from(["{}", "({}) {}-{}", "{}.{}.{}", "{} {} {}", "1 {}", "+{}", "+1{}"]),
    region=st.sampled_from(["US", "CA", "JM", "GB", "IN", "DE", None]),
)
def test_national_and_international_formats_agree_with_phonenumbers(digits, shape, region):
    raw = shape.format(digits[:3], digits[3:6], digits[6:]) if shape.count("{}") == 3 else shape.format(digits)
    assert _fast(raw, region) == _slow(raw, region)


def test_non_ascii_digits_never_take_the_fast_path():
    assert _fast("+١٤١٥٥٥٥٠١٢٣", None) in (None, "+14155550123")


@pytest.mark.parametrize(
    ("check", "raw", "expected"),
    [
        (contacts.email, "  Ann@Example.COM ", "ann@example.com"),
        (contacts.timezone, "America/New_York", "America/New_York"),
        (contacts.region, "us", "US"),
        (contacts.text, "  Ann ", "Ann"),
    ],
)
def test_field_checks_normalise(check, raw, expected):
    assert check(raw) == expected


@pytest.mark.parametrize(
    ("check", "raw"),
    [
        (contacts.email, "no-at-sign"),
        (contacts.email, "a@b"),
        (contacts.timezone, "Mars/Olympus"),
        (contacts.timezone, "America/Nowhere"),
        (contacts.region, "USA"),
        (contacts.text, "x" * 1001),
    ],
)
def test_field_checks_say_why(check, raw):
    with pytest.raises(ValueError, match=r".+"):
        check(raw)


def test_check_fields_lists_every_bad_field_and_reads_national_numbers_in_the_country():
    fields, errors = contacts.check_fields(
        {"phone": "(415) 555-0123", "country": "US", "email": "ann@example.com", "first_name": " Ann "}, None
    )
    assert errors == []
    assert fields == {"phone": "+14155550123", "email": "ann@example.com", "first_name": "Ann"}
    _, errors = contacts.check_fields({"phone": "12", "email": "nope", "timezone": "Nowhere", "country": "ZZZ"}, None)
    assert [e["field"] for e in errors] == ["country", "email", "phone", "timezone"]


def test_metadata_merges_and_null_removes():
    assert contacts.merge_metadata({"a": 1, "b": 2}, {"b": None, "c": 3}) == {"a": 1, "c": 3}


@pytest.mark.parametrize(
    ("header", "phone", "email", "first"),
    [
        (["First Name", "Last Name", "Email Address", "Phone Number"], 3, 2, 0),
        (["mobile", "E-mail", "firstname"], 0, 1, 2),
        (["PHONE_NUMBER", "company"], 0, None, None),
        (["\ufeffphone", "plan"], 0, None, None),
        (["First Name", "E-mail Address", "Mobile Phone"], 2, 1, 0),  # Outlook's export
        (["Given Name", "E-mail 1 - Value", "Phone 1 - Value"], 2, 1, 0),  # Google Contacts'
    ],
)
def test_header_variants_map_to_fields(header, phone, email, first):
    columns = map_header(header)
    assert (columns.phone, columns.email, columns.text_cells[0]) == (phone, email, first)


def test_other_columns_and_repeated_fields_are_metadata():
    columns = map_header(["phone", "mobile", "plan", "", "Country"])
    assert columns.phone == 0
    assert columns.metadata_keys == ("mobile", "plan", "Country")
    assert columns.country == 4


@pytest.mark.parametrize(
    ("header", "reasons"),
    [
        (["phone", "phone"], ["the column 'phone' is named twice (columns 1, 2)"]),
        (["email", "first_name", "email"], ["the column 'email' is named twice (columns 1, 3)"]),
        (["\ufeffphone", "plan", " phone ", "plan"],
         ["the column 'phone' is named twice (columns 1, 3)", "the column 'plan' is named twice (columns 2, 4)"]),
    ],
)
def test_a_header_naming_a_column_twice_is_refused(header, reasons):
    with pytest.raises(HeaderError, match="names a column twice") as raised:
        map_header(header)
    assert list(raised.value.reasons) == reasons


def test_other_spellings_of_a_name_are_no_duplicates():
    columns = map_header(["phone", "Phone", "mobile", "", ""])  # empty cells repeat freely
    assert (columns.phone, columns.metadata_keys) == (0, ("Phone", "mobile"))


def test_a_header_without_phone_or_email_is_refused():
    with pytest.raises(HeaderError, match="neither a phone nor an email"):
        map_header(["name", "plan"])


def _columns() -> Columns:
    return map_header(["first_name", "phone", "email", "timezone", "plan", "country"])


def test_a_good_row_is_staged_with_its_metadata():
    row, errors = validate_row(
        [" Ann ", "4155550123", "ANN@x.com", "", "pro", ""], _columns(), 7, "US", account_id="acc_1", ids_from=0x100
    )
    assert errors == []
    expected = ("ct_0000000000000107", "acc_1", "+14155550123", "ann@x.com", "Ann", None, None, None, b'{"plan":"pro"}')
    assert row == expected
    assert line_of(0x100, "ct_0000000000000107") == 7
    assert contact_id(0x100, 7) == "ct_0000000000000107"


@pytest.mark.parametrize(
    ("cells", "metadata"),
    [
        (["+14155550123", "a", "b"], {"pl%an": "a", 'q"uote': "b"}),
        (["+14155550123", " ", "é\n\t\\"], {'q"uote': "é\n\t\\"}),
        (["+14155550123", "", ""], {}),
        (["+14155550123", "x"], {"pl%an": "x"}),
    ],
)
def test_metadata_is_a_json_object_of_the_non_empty_cells(cells, metadata):
    row, errors = validate_row(cells, map_header(["phone", "pl%an", 'q"uote']), 2, None)
    assert errors == []
    assert row is not None
    assert json.loads(row[-1]) == metadata  # type: ignore[arg-type]


def test_a_file_without_metadata_columns_stages_an_empty_object():
    row, _ = validate_row(["+14155550123"], map_header(["phone"]), 2, None)
    assert row is not None
    assert row[-1] == b"{}"


def test_a_row_reports_every_bad_field():
    row, errors = validate_row(["Ann", "12", "nope", "Mars/Base", "pro", ""], _columns(), 9, None)
    assert row is None
    assert [field for field, _ in errors] == ["phone", "email", "timezone"]


def test_a_row_needs_a_phone_or_an_email_and_no_extra_cells():
    assert validate_row(["Ann", "", "", "", "", ""], _columns(), 2, None)[1] == [
        ("phone", "a contact needs a phone or an email")
    ]
    _, errors = validate_row(["Ann", "+14155550123", "", "", "", "", "surprise"], _columns(), 2, None)
    assert errors == [("row", "7 cells but the header has 6")]  # the extra cell is not read as any field
    assert validate_row(["Ann", "+14155550123", "", "", "", "", ""], _columns(), 2, None)[1] == []


def test_a_country_column_reads_that_rows_national_number():
    row, _ = validate_row(["Ann", "020 7946 0018", "", "", "", "GB"], _columns(), 2, "US")
    assert row is not None
    assert row[2] == "+442079460018"


def test_short_rows_are_padded():
    row, errors = validate_row(["Ann", "+14155550123"], _columns(), 2, None)
    assert errors == []
    assert row is not None
    assert row[-2:] == (None, b"{}")


def _records(data: bytes, sizes: list[int], encoding: str = "utf-8") -> list[tuple[int, list[str], str | None]]:
    records, out, start = CsvRecords(encoding), [], 0
    for size in sizes:
        out += records.feed(data[start : start + size])
        start += size
    out += records.feed(data[start:], final=True)
    return out


def test_a_file_that_is_not_utf8_from_its_start_is_read_as_windows_1252():
    data = "first_name,phone\nJosé,+14155550123\nZoë “Z”,+14155550124\n".encode("cp1252")
    expected = [(1, ["first_name", "phone"], None), (2, ["José", "+14155550123"], None),
                (3, ["Zoë “Z”", "+14155550124"], None)]
    assert _records(data, []) == expected
    for cut in range(1, len(data)):
        assert _records(data, [cut]) == expected, cut
    # UTF-8 stays UTF-8, also when a character straddles the bytes the choice is made on
    utf8 = ("phone,note\n" + "+14155550123," + "a" * (SNIFF_BYTES - 25) + "é\n").encode()
    assert _records(utf8, [])[1][1][1].endswith("é")


def test_a_row_of_empty_cells_is_skipped_like_a_blank_line():
    data = b"phone,note\n+14155550123,a\n,,\n , \n+14155550124,b\n"
    assert _records(data, []) == [
        (1, ["phone", "note"], None), (2, ["+14155550123", "a"], None), (5, ["+14155550124", "b"], None)
    ]


def test_records_cut_anywhere_give_the_same_rows_and_line_numbers():
    data = 'phone,note\r\n+14155550123,"two\nlines"\n\n+14155550124,"a ""quote"""\n+14155550125,é\n'.encode()
    whole = _records(data, [])
    assert whole == [
        (1, ["phone", "note"], None),
        (2, ["+14155550123", "two\nlines"], None),
        (5, ["+14155550124", 'a "quote"'], None),
        (6, ["+14155550125", "é"], None),
    ]
    for cut in range(1, len(data)):
        assert _records(data, [cut]) == whole, cut
    assert _records(data, [1] * len(data)) == whole


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("phone,email,first name", ","),
        ("phone;email;first name", ";"),  # a spreadsheet's export where the decimal separator is a comma
        ("phone\temail", "\t"),
        ("phone|email", "|"),
        ("phone", ","),  # one column: nothing to tell, the default
        ('"Name; first",phone', ","),  # quoted text does not count
        ('"Name, first";phone', ";"),
        ("a;b,c", ","),  # a tie: the comma
    ],
)
def test_the_delimiter_is_read_off_the_header(header, delimiter):
    assert guess_delimiter(header) == delimiter


def test_a_semicolon_file_cut_anywhere_reads_as_its_comma_twin():
    commas = b'\n\nphone,note\n+14155550123,"a;b, c"\n+14155550124,x\n'
    semicolons = b'\n\nphone;note\n+14155550123;"a;b, c"\n+14155550124;x\n'
    whole = _records(commas, [])
    assert whole == [
        (3, ["phone", "note"], None),
        (4, ["+14155550123", "a;b, c"], None),
        (5, ["+14155550124", "x"], None),
    ]
    for cut in range(1, len(semicolons)):
        assert _records(semicolons, [cut]) == whole, cut


def test_a_bom_is_dropped_and_other_encodings_are_read():
    assert _records("\ufeffphone\n1\n".encode(), [])[0][1] == ["phone"]
    assert _records("phone,name\n1,José\n".encode("latin-1"), [], "latin-1")[1][1] == ["1", "José"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_excel_unicode_text_utf16_with_a_bom_is_read_whatever_encoding_was_said(encoding):
    text = "phone\tname\n+14155550123\tJosé 😀\n"
    data = (codecs.BOM_UTF16_BE if encoding == "utf-16-be" else b"") + text.encode(encoding)
    expected = [(1, ["phone", "name"], None), (2, ["+14155550123", "José 😀"], None)]
    for cut in range(1, len(data)):
        assert _records(data, [cut]) == expected, cut
    assert _records(data, [1] * len(data)) == expected


def test_a_stray_quote_in_an_unquoted_field_is_kept_literally():
    data = b"phone,height\n+14155550123,5'11\"\n+14155550124,6'0\"\n"
    assert [r[1] for r in _records(data, [20])][1:] == [["+14155550123", "5'11\""], ["+14155550124", "6'0\""]]


def test_a_cut_waits_for_an_open_quote():
    assert split_at_record_end('a,"b\nc"\nd,"e\n') == ('a,"b\nc"\n', 'd,"e\n')
    assert split_at_record_end("no newline yet") == ("", "no newline yet")


def test_a_record_with_a_nul_is_refused_and_the_others_kept():
    data = b"phone,note\n+14155550123,ok\n+14155550124,bad\x00note\n+14155550125,ok\n"
    records = _records(data, [])
    assert [(line, problem) for line, _, problem in records] == [
        (1, None),
        (2, None),
        (3, "contains a NUL character"),
        (4, None),
    ]
    assert records[2][1] == []


def test_a_column_naming_an_opt_out_is_skipped_as_the_exports_own_are():
    # an import never opts anyone out or in, and metadata never holds an opt-out
    columns = map_header(["phone", "opted_out", "Opted Out SMS", "contact_id", "plan"])
    assert columns.metadata_keys == ("plan",)
    assert [skipped_column(name) for name in ("opted_out", "Opted Out", "opted_out_voice", "created_at", "plan")] == [
        True, True, True, True, False]


def test_only_an_opt_out_key_with_a_value_is_refused_as_metadata():
    assert contacts.opt_out_key_errors("contacts[0].", {"opted_out": False, "plan": "x", "opted_out_sms": None}) == [
        {"field": "contacts[0].opted_out", "reason": contacts.OPT_OUT_KEY_REASON}]
    assert "PATCH /contacts/{id}" in contacts.OPT_OUT_KEY_REASON


def test_a_quote_never_closed_refuses_the_record_that_opened_it_and_reads_the_lines_after():
    data = b'phone,first_name\n+14155550413,before\n+14155550414,"unterminated\n+14155550415,ok\n'
    expected = [
        (1, ["phone", "first_name"], None),
        (2, ["+14155550413", "before"], None),
        (3, [], "a quote opened at line 3 is never closed"),
        (4, ["+14155550415", "ok"], None),
    ]
    assert _records(data, []) == expected
    for cut in range(1, len(data)):
        assert _records(data, [cut]) == expected, cut
    assert _records(data, [1] * len(data)) == expected
    # past the first 4 KB too, where the text is read chunk by chunk (the open record waiting for more)
    head = b"phone,first_name\n" + b"+14155550100,x\n" * 300
    padded = head + data[len(b"phone,first_name\n") :]
    whole = _records(padded, [])
    assert whole[-3:] == [
        (302, ["+14155550413", "before"], None),
        (303, [], "a quote opened at line 303 is never closed"),
        (304, ["+14155550415", "ok"], None),
    ]
    for cut in range(len(head), len(padded)):
        assert _records(padded, [cut]) == whole, cut
        assert _records(padded, [cut, 7]) == whole, cut
    # without a newline at the end, and when the quote opens on a later line of the record
    assert _records(b'phone,n\n1,"a\n2,b', [])[1:] == [(2, [], "a quote opened at line 2 is never closed"),
                                                     (3, ["2", "b"], None)]
    assert _records(b'phone,n,m\n1,"a\nb","c\n2,d\n', [])[1:] == [
        (2, [], "a quote opened at line 3 is never closed"),
        (4, ["2", "d"], None),
    ]


def test_a_quoted_field_the_quote_count_misjudges_still_waits_for_its_closing_quote():
    # the stray quote of 5'11" makes the count even after `"multi`, whose field closes on the next line
    head = b"phone,height,note\n" + b"+14155550100,6',x\n" * 300  # past the first 4 KB, read before any record
    data = head + b'+14155550123,5\'11",x\n+14155550124,y,"multi\nline"\n+14155550125,z,w\n'
    whole = _records(data, [])
    assert [r[1] for r in whole][-3:] == [
        ["+14155550123", "5'11\"", "x"],
        ["+14155550124", "y", "multi\nline"],
        ["+14155550125", "z", "w"],
    ]
    for cut in range(len(head), len(data)):
        assert _records(data, [cut]) == whole, cut


def test_bytes_not_valid_in_the_encoding_refuse_their_record_naming_the_field():
    head = b"First Name,phone\n" + b"Ann,+14155550123\n" * 300  # 5 KB of ASCII: read as UTF-8
    data = head + "José,+14155550124\n".encode("cp1252") + b"Zoe,+14155550125\n"
    whole = _records(data, [])
    bad, good = whole[-2:]
    assert (bad[0], bad[1], bad[2].field) == (302, [], "first_name")
    assert "not valid UTF-8" in bad[2]
    assert "save the file as UTF-8" in bad[2]
    assert good == (303, ["Zoe", "+14155550125"], None)
    assert all(problem is None for _, _, problem in whole[:-2])
    for cut in (4096, 5000, len(head) + 3, len(head) + 4, len(data) - 1):
        assert _records(data, [cut]) == whole, cut
    # a character cut off at the end of the file is refused too, not replaced
    cut_off = _records(b"phone,name\n" + b"+14155550123,Ann\n" * 300 + b"+14155550124,Jos\xc3", [])
    assert cut_off[-1][:2] == (302, [])
    assert cut_off[-1][2].field == "name"
