"""CSV contacts, pure: bytes → records (incrementally), header → columns, row → contact or errors.

`CsvRecords` cuts the decoded text only at record boundaries (an even count of quotes before a
newline), so a quoted field spanning chunks is never split and memory stays one chunk deep.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import operator
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring as json_string

from shared.domain import contacts

#: Header spellings of each built-in column, once lower-cased with spaces, dashes and dots as `_`.
HEADER_ALIASES: dict[str, frozenset[str]] = {
    "first_name": frozenset({"first_name", "firstname", "first", "given_name", "forename", "fname"}),
    "last_name": frozenset({"last_name", "lastname", "last", "surname", "family_name", "lname"}),
    # Outlook's and Google Contacts' exports too ("E-mail Address", "E-mail 1 - Value", …)
    "email": frozenset(
        {"email", "email_address", "emailaddress", "e_mail", "mail", "e_mail_address", "e_mail_1_value"}
    ),
    "phone": frozenset(
        {
            "phone",
            "phone_number",
            "phonenumber",
            "phone_no",
            "mobile",
            "mobile_phone",
            "mobile_number",
            "cell",
            "cell_phone",
            "cellphone",
            "telephone",
            "tel",
            "msisdn",
            "whatsapp",
            "mobile_phone_number",
            "phone_1_value",
        }
    ),
    "company": frozenset(
        {"company", "company_name", "organization", "organisation", "org", "business", "organization_1_name"}
    ),
    "timezone": frozenset({"timezone", "time_zone", "tz"}),
}
#: Header spellings of a per-row country (the default region of that row's phone; also kept as metadata).
COUNTRY_ALIASES = frozenset({"country", "country_code", "region"})
#: Columns a contacts export adds that an import skips (neither a field nor metadata): ids and
#: times are the platform's, and an opt-out is the contact's own to give.
EXPORT_ONLY_COLUMNS = ("contact_id", "opted_out_sms", "opted_out_email", "opted_out_voice", "created_at")
EXPORT_ONLY = frozenset(EXPORT_ONLY_COLUMNS)
#: Columns an import skips: the export's own, and any other naming an opt-out (`opted_out`), which
#: an import never changes and metadata never holds (`contacts.OPT_OUT_KEYS`).
SKIPPED = EXPORT_ONLY | contacts.OPT_OUT_KEYS
#: Bytes read before the file's encoding is decided (its BOM, or whether it is UTF-8 at all).
SNIFF_BYTES = 4096
#: Most metadata columns a file may have (a bound on the JSON object each row carries).
MAX_METADATA_COLUMNS = 500
#: Characters held back waiting for a quoted field to close before the text is cut regardless
#: (above the csv module's own field limit, so no readable record is ever cut).
FORCE_CUT = 4 * csv.field_size_limit()

MAX = contacts.MAX_FIELD
_SEPARATORS = re.compile(r"[\s.\-]+")
_ALIAS_TO_FIELD = {alias: name for name, aliases in HEADER_ALIASES.items() for alias in aliases}

#: A staged row's columns: a contact row, as COPY takes it (see `row_stager`).
STAGED_COLUMNS = ("id", "account_id", "phone", "email", "first_name", "last_name", "company", "timezone", "metadata")
#: A staged row: values of STAGED_COLUMNS, the metadata as JSON text (UTF-8).
StagedRow = tuple[str | bytes | None, ...]
#: A row's problems: (field, reason).
RowError = tuple[str, str]
#: What staging one row gives: the staged row, or None and its problems.
StagerResult = tuple[StagedRow | None, list[RowError]]


class HeaderError(ValueError):
    """The header row cannot be used (no phone or email column, a name given twice); `reasons`,
    one a problem, when there are several."""

    def __init__(self, message: str, reasons: Sequence[str] = ()):
        super().__init__(message)
        self.reasons = tuple(reasons) or (message,)


def header_key(name: str) -> str:
    """A header cell as compared with the aliases: `"First Name"` → `first_name`."""
    return _SEPARATORS.sub("_", name.strip().lower()).strip("_")


@dataclass(frozen=True, slots=True)
class Columns:
    """Which cell feeds which built-in field (None: no such column); every other non-empty
    header is a metadata key."""

    phone: int | None
    email: int | None
    timezone: int | None
    text_cells: tuple[int | None, int | None, int | None]  # first_name, last_name, company
    metadata_keys: tuple[str, ...]
    metadata_cells: tuple[int, ...]
    country: int | None
    width: int


def map_header(header: Sequence[str]) -> Columns:
    """Columns from the header row; the first column spelling a built-in field wins, later ones
    (another alias: `mobile` after `phone`) are metadata. HeaderError when a name is given twice
    (`duplicated_names`), when there is neither a phone nor an email column, or more than
    MAX_METADATA_COLUMNS metadata columns."""
    twice = [
        f"the column {name!r} is named twice (columns {', '.join(map(str, at))})"
        for name, at in duplicated_names(header).items()
    ]
    if twice:
        raise HeaderError("the header names a column twice: " + "; ".join(twice), twice)
    fields: dict[str, int] = {}
    keys: list[str] = []
    cells: list[int] = []
    country = None
    for index, raw in enumerate(header):
        key = header_key(raw.lstrip("\ufeff"))
        name = _ALIAS_TO_FIELD.get(key)
        if name is not None and name not in fields:
            fields[name] = index
            continue
        if key in COUNTRY_ALIASES and country is None:
            country = index
        if raw.strip() and key not in SKIPPED:
            keys.append(raw.strip())
            cells.append(index)
    if "phone" not in fields and "email" not in fields:
        raise HeaderError(
            "the header has neither a phone nor an email column "
            f"(found {', '.join(repr(h) for h in header) or 'nothing'})"
        )
    if len(keys) > MAX_METADATA_COLUMNS:
        raise HeaderError(f"the header has {len(keys)} metadata columns; at most {MAX_METADATA_COLUMNS} are kept")
    texts = (fields.get("first_name"), fields.get("last_name"), fields.get("company"))
    return Columns(
        fields.get("phone"),
        fields.get("email"),
        fields.get("timezone"),
        texts,
        tuple(keys),
        tuple(cells),
        country,
        len(header),
    )


def skipped_column(name: str) -> bool:
    """Whether an import skips a column of this name (`Opted Out`, `contact_id`…): an export writes
    no metadata key under such a name, so that what it writes is what an import reads back."""
    return header_key(name) in SKIPPED


def duplicated_names(header: Sequence[str]) -> dict[str, list[int]]:
    """The names the header gives more than one column (spaces around them aside; `Email` and
    `email` are two names: the second is a metadata key), each with its columns (counted from 1);
    empty cells aside. The second of two equal names has nowhere to go: not the field (the first
    has it), nor a metadata key of its own."""
    seen: dict[str, list[int]] = {}
    for index, raw in enumerate(header):
        name = raw.lstrip("\ufeff").strip()
        if name:
            seen.setdefault(name, []).append(index + 1)
    return {name: at for name, at in seen.items() if len(at) > 1}


def contact_id(ids_from: int, line: int) -> str:
    """The id of the contact an import creates from `line`: `ct_` and 16 hex digits of the
    import's random base plus the line (the form of `new_id("contact")`). One import's new contacts
    sit side by side in the primary key's index, and their ids sort as their lines do."""
    return f"ct_{ids_from + line:016x}"


def line_of(ids_from: int, staged_id: str) -> int:
    """The line a staged row's id was made from (see `contact_id`)."""
    return int(staged_id[3:], 16) - ids_from


def validate_row(
    cells: list[str],
    columns: Columns,
    line: int,
    default_region: str | None,
    *,
    account_id: str = "acc_test",
    ids_from: int = 0,
) -> StagerResult:
    """One data row as a staged contact, or None with every problem found (field, reason)."""
    return row_stager(columns, default_region, account_id, ids_from)(cells, line)


def row_stager(
    columns: Columns, default_region: str | None, account_id: str, ids_from: int
) -> Callable[[list[str], int], StagerResult]:
    """`validate_row` for one import: its header, default region, account and id base bound once
    (it runs for every imported row). A missing column reads an empty cell past the header's.

    A staged row is a contact row in STAGED_COLUMNS order, the metadata as a JSON object of the
    row's non-empty metadata cells (a later column of a repeated key wins, as in jsonb).
    """
    width = columns.width
    i_first, i_last, i_company = (width if i is None else i for i in columns.text_cells)
    i_phone, i_email, i_zone = (width if i is None else i for i in (columns.phone, columns.email, columns.timezone))
    i_country = columns.country
    metadata = _metadata_encoder(columns)
    e164, email_address, zone_name, regions = contacts.e164, contacts.email, contacts.timezone, contacts.REGIONS
    blank = [""] * (width + 1)

    def stage(cells: list[str], line: int) -> StagerResult:
        errors: list[RowError] = []
        if len(cells) == width:
            cells.append("")
        elif len(cells) < width:
            cells = cells + blank[len(cells) :]
        else:
            if any(c.strip() for c in cells[width:]):
                errors.append(("row", f"{len(cells)} cells but the header has {width}"))
            cells = [*cells[:width], ""]
        first = cells[i_first].strip() or None
        last = cells[i_last].strip() or None
        company = cells[i_company].strip() or None
        if (first and len(first) > MAX) or (last and len(last) > MAX) or (company and len(company) > MAX):
            for name, value in (("first_name", first), ("last_name", last), ("company", company)):
                if value is not None and len(value) > MAX:
                    errors.append((name, f"longer than {MAX} characters"))
        region = default_region
        if i_country is not None:
            given = cells[i_country].strip().upper()
            if given in regions:
                region = given
        phone: str | None = cells[i_phone].strip()
        if phone:
            try:
                phone = e164(phone, region)
            except ValueError as exc:
                errors.append(("phone", str(exc)))
        else:
            phone = None
        email: str | None = cells[i_email].strip()
        if email:
            try:
                email = email_address(email)
            except ValueError as exc:
                errors.append(("email", str(exc)))
        else:
            email = None
        zone: str | None = cells[i_zone].strip()
        if zone:
            try:
                zone = zone_name(zone)
            except ValueError as exc:
                errors.append(("timezone", str(exc)))
        else:
            zone = None
        if errors:
            return None, errors
        if phone is None and email is None:
            return None, [("phone", "a contact needs a phone or an email")]
        return (
            f"ct_{ids_from + line:016x}",  # contact_id(ids_from, line), inlined: this runs for every row
            account_id,
            phone,
            email,
            first,
            last,
            company,
            zone,
            metadata(cells),
        ), errors

    return stage


def _metadata_encoder(columns: Columns) -> Callable[[list[str]], bytes]:
    """The JSON object (UTF-8) of a row's non-empty metadata cells, for one header: the keys are
    encoded once, and a row with every cell filled (the usual one) is one string formatting.

    Bytes, not str: the database codec sends bytes as JSON text already (shared.db.pool), and
    unlike a str subclass they are not tracked by the garbage collector while a batch waits.
    """
    cells, keys = columns.metadata_cells, [json_string(key) + ":" for key in columns.metadata_keys]
    if not cells:
        return lambda row: b"{}"
    pick = operator.itemgetter(*cells) if len(cells) > 1 else lambda row: (row[cells[0]],)
    template = "{" + ",".join(key.replace("%", "%%") + "%s" for key in keys) + "}"

    def encode(row: list[str]) -> bytes:
        values = tuple(map(str.strip, pick(row)))
        if "" not in values:
            return (template % tuple(map(json_string, values))).encode()
        pairs = [key + json_string(value) for key, value in zip(keys, values, strict=True) if value]
        return ("{" + ",".join(pairs) + "}").encode()

    return encode


#: Field delimiters a file may use, the first preferred: spreadsheets export with `;` where the
#: decimal separator is a comma (most of Europe), and some tools write tabs or `|`.
DELIMITERS = (",", ";", "\t", "|")
_QUOTED = re.compile(r'"[^"]*"')


def guess_delimiter(header: str) -> str:
    """The delimiter of a file, from its header line: the one of DELIMITERS that appears most often
    outside quotes (a comma when none appears, or on a tie)."""
    bare = _QUOTED.sub("", header)
    counts = [bare.count(delimiter) for delimiter in DELIMITERS]
    return DELIMITERS[counts.index(max(counts))]


#: What a decoder puts for bytes not valid in the file's encoding (after a strict decode failed):
#: a lone surrogate, which no strict decoding gives, so a record holding one was damaged.
_INVALID = "\udcff"
_INVALID_ERRORS = "contact-csv-invalid"


def _mark_invalid(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return _INVALID, exc.end


codecs.register_error(_INVALID_ERRORS, _mark_invalid)
#: How an encoding is named to people.
_ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "cp1252": "Windows-1252", "utf-16": "UTF-16"}


class RecordProblem(str):
    """A record's problem (a str, its reason) and the field it is about (`row` when not one)."""

    field: str

    def __new__(cls, reason: str, field: str = "row") -> RecordProblem:
        problem = super().__new__(cls, reason)
        problem.field = field
        return problem


class CsvRecords:
    """Feed bytes, get `(line, cells, error)` per record (line numbers from 1, blank lines and rows
    of empty cells skipped).

    `error` is why a record cannot be read (then `cells` is empty): the csv module's complaint, a
    quote opened and never closed (the lines after the one that opened it are read again as
    records), or bytes not valid in the file's encoding (a `RecordProblem` naming the field). A
    decoding never replaces bytes silently: a chunk is decoded strictly, and only when that fails
    again marking the invalid bytes, whose records are refused.
    The delimiter is `delimiter`, else guessed from the header line (`guess_delimiter`). A UTF-8
    file may start with a byte order mark; one of UTF-16 (Excel's "Unicode text") makes the file
    read as UTF-16 whatever encoding was said, as a browser does.
    """

    def __init__(self, encoding: str = "utf-8", delimiter: str | None = None) -> None:
        name = codecs.lookup(encoding).name
        self._utf8 = name == "utf-8"
        self._decoder = codecs.getincrementaldecoder("utf-8-sig" if self._utf8 else name)()
        self._encoding = name
        self._damaged = False  # bytes were not valid: the text parsed may hold _INVALID
        self._header: list[str] | None = None
        self._start: bytes | None = b""  # the file's first bytes, until its encoding is decided
        self._pending = ""
        self._line = 0  # physical lines consumed so far
        self.delimiter = delimiter

    def _sniff(self, data: bytes, final: bool) -> bytes | None:
        """`data` behind the file's first bytes, once there are enough to tell the encoding by; None
        while waiting for them. A UTF-16 BOM switches the decoder to UTF-16; a file meant to be
        UTF-8 whose first bytes are not is read as Windows-1252 (Excel's "CSV" on Windows), so
        that `José` does not come out as `Jos�`."""
        assert self._start is not None
        data = self._start + data
        if len(data) < SNIFF_BYTES and not final:
            self._start = data
            return None
        self._start = None
        if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            self._decoder, self._encoding = codecs.getincrementaldecoder("utf-16")(), "utf-16"
        elif self._utf8 and not _utf8_so_far(data[:SNIFF_BYTES], final and len(data) <= SNIFF_BYTES):
            self._decoder, self._encoding = codecs.getincrementaldecoder("cp1252")(), "cp1252"
        return data

    def _decode(self, data: bytes, final: bool) -> str:
        """`data` decoded strictly; when it holds bytes not valid in the encoding, decoded again
        with each run of them as _INVALID (the decoder's state restored first)."""
        state = self._decoder.getstate()
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError:
            pass
        self._decoder.setstate(state)
        self._decoder.errors = _INVALID_ERRORS
        try:
            text = self._decoder.decode(data, final)
        finally:
            self._decoder.errors = "strict"
        self._damaged = True
        return text

    def _invalid(self, cells: list[str]) -> RecordProblem:
        """The problem of a record holding bytes not valid in the encoding, naming the first
        field that does."""
        index = next(i for i, cell in enumerate(cells) if _INVALID in cell)
        field = "row"
        if self._header is not None and index < len(self._header):
            raw = self._header[index].lstrip("\ufeff")
            field = _ALIAS_TO_FIELD.get(header_key(raw), raw.strip()) or "row"
        encoding = _ENCODING_NAMES.get(self._encoding, self._encoding)
        return RecordProblem(
            f"its bytes are not valid {encoding} (the encoding the file was read in): "
            "save the file as UTF-8 and import it again",
            field,
        )

    def feed(self, data: bytes, final: bool = False) -> Iterator[tuple[int, list[str], str | None]]:
        """Records completed by `data` (and, when `final`, whatever is left), one at a time (a
        chunk's records all alive at once would keep the garbage collector busy)."""
        if self._start is not None:
            sniffed = self._sniff(data, final)
            if sniffed is None:
                return
            data = sniffed
        text = self._pending + self._decode(data, final)
        if final:
            complete, self._pending = text, ""
        else:
            complete, self._pending = split_at_record_end(text)
        if not complete:
            return
        if self.delimiter is None:
            lines = io.StringIO(complete, newline="")  # lines as the reader will count them
            header = next((line for line in lines if line.strip()), None)
            if header is None:  # blank lines so far: the header is still to come
                self._line += sum(1 for _ in io.StringIO(complete, newline=""))
                return
            self.delimiter = guess_delimiter(header)
        damaged = self._damaged and _INVALID in complete  # (a damaged record is refused)
        nul = "\x00" in complete  # PostgreSQL text cannot hold one: such a record is refused
        unusual = nul or damaged or self._header is None
        while complete:  # again after a record opening a quote never closed: the lines after it
            # A last line of its own, read as a record of its own unless a quote left open takes it
            text = complete + ("\x00" if complete.endswith(("\n", "\r")) else "\n\x00")
            end = text.count("\n") + text.count("\r") - text.count("\r\n") + 1  # its line
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter)
            base, last = self._line, 0
            left: str | None = None  # what follows a record opening a quote never closed
            while True:
                start = base + last + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    last = reader.line_num
                    yield start, [], str(exc)
                    continue
                last = reader.line_num
                if last >= end:  # the last line: its own record, unless a quote left open took it
                    last = end - 1
                    if cells != ["\x00"]:
                        left = yield from self._unclosed(complete, start - base - 1, final)
                    break
                if unusual:  # a NUL, bytes not valid, or the header still to come
                    if nul and any("\x00" in cell for cell in cells):
                        yield start, [], "contains a NUL character"
                        continue
                    if damaged and any(_INVALID in cell for cell in cells):
                        yield start, [], self._invalid(cells)
                        continue
                    if self._header is None and cells and any(cell.strip() for cell in cells):
                        self._header, unusual = cells, nul or damaged
                if cells and (cells[0].strip() or any(cell.strip() for cell in cells)):  # `,,,,` is blank too
                    yield start, cells, None
            if left is None:
                self._line = base + min(last, end - 1)
                break
            complete = left
        self._damaged = self._damaged and _INVALID in self._pending

    def _unclosed(
        self, complete: str, done: int, final: bool
    ) -> Generator[tuple[int, list[str], str | None], None, str]:
        """The record after the first `done` lines of `complete` opens a quote that the text never
        closes. Unless `final` (or the record is past FORCE_CUT characters), the quote may close
        in the next chunk: the record waits for it in `_pending`. Else it is refused, and the lines
        after the one that opened the quote are what is left to read again."""
        lines = io.StringIO(complete, newline="")
        for _ in range(done):
            next(lines)
        rest = list(lines)
        start = self._line + done + 1
        if not final and sum(map(len, rest)) <= FORCE_CUT:
            self._pending = "".join(rest) + self._pending
            self._line += done
            return ""
        record = "".join(rest)
        quotes = [found.start() for found in re.finditer('"', record)]
        last = len(quotes) - 1  # the quote left open: the last one not escaped (`""`) after it
        while last >= 1 and quotes[last - 1] == quotes[last] - 1:
            last -= 2
        at, opened = quotes[last] if last >= 0 else 0, 0  # the line it is on
        for length in itertools.accumulate(map(len, rest)):
            if length > at:
                break
            opened += 1
        yield start, [], f"a quote opened at line {start + opened} is never closed"
        self._line += done + opened + 1
        return "".join(rest[opened + 1 :])


def _utf8_so_far(prefix: bytes, whole: bool) -> bool:
    """Whether `prefix` is UTF-8 (a character cut at its end aside, unless it is the whole file)."""
    try:
        prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        return not whole and exc.reason == "unexpected end of data"
    return True


def split_at_record_end(text: str) -> tuple[str, str]:
    """(complete records, the rest): cut after the last newline outside quotes.

    Quotes are counted, not parsed, so a stray quote inside an unquoted field (`5'11"`) looks
    like an open field; past FORCE_CUT characters the text is cut at its last newline anyway and
    the csv module, which knows better, reads it.
    """
    cut = text.rfind("\n") + 1
    if cut == 0:
        return ("", text) if len(text) <= FORCE_CUT else (text, "")
    if text.count('"', 0, cut) % 2 == 0:
        return text[:cut], text[cut:]
    quotes, best, position = 0, 0, 0
    while True:
        newline = text.find("\n", position, cut)
        if newline < 0:
            break
        quotes += text.count('"', position, newline)
        position = newline + 1
        if quotes % 2 == 0:
            best = position
    if len(text) - best > FORCE_CUT:
        best = cut
    return text[:best], text[best:]
