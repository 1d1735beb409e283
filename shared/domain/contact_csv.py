"""CSV contacts, pure: bytes → records (incrementally), header → columns, row → contact or errors.

`CsvRecords` cuts the decoded text only at record boundaries (an even count of quotes before a
newline), so a quoted field spanning chunks is never split and memory stays one chunk deep.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from shared.domain import contacts

#: Header spellings of each built-in column, once lower-cased with spaces, dashes and dots as `_`.
HEADER_ALIASES: dict[str, frozenset[str]] = {
    "first_name": frozenset({"first_name", "firstname", "first", "given_name", "forename", "fname"}),
    "last_name": frozenset({"last_name", "lastname", "last", "surname", "family_name", "lname"}),
    "email": frozenset({"email", "email_address", "emailaddress", "e_mail", "mail"}),
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
        }
    ),
    "company": frozenset({"company", "company_name", "organization", "organisation", "org", "business"}),
    "timezone": frozenset({"timezone", "time_zone", "tz"}),
}
#: Header spellings of a per-row country (the default region of that row's phone; also kept as metadata).
COUNTRY_ALIASES = frozenset({"country", "country_code", "region"})
#: Most metadata columns a file may have (each is a column of the import's staging table).
MAX_METADATA_COLUMNS = 500
#: Characters held back waiting for a quoted field to close before the text is cut regardless
#: (above the csv module's own field limit, so no readable record is ever cut).
FORCE_CUT = 4 * csv.field_size_limit()

MAX = contacts.MAX_FIELD
_SEPARATORS = re.compile(r"[\s.\-]+")
_ALIAS_TO_FIELD = {alias: name for name, aliases in HEADER_ALIASES.items() for alias in aliases}

#: A staged row: (line, phone, email, first_name, last_name, company, timezone, *metadata values).
StagedRow = tuple[int | str | None, ...]
#: A row's problems: (field, reason).
RowError = tuple[str, str]
#: What staging one row gives: the staged row, or None and its problems.
StagerResult = tuple[StagedRow | None, list[RowError]]


class HeaderError(ValueError):
    """The header row cannot be used (no phone or email column)."""


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
    are metadata. HeaderError when there is neither a phone nor an email column, or more than
    MAX_METADATA_COLUMNS metadata columns."""
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
        if raw.strip():
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


def validate_row(
    cells: list[str], columns: Columns, line: int, default_region: str | None
) -> tuple[StagedRow | None, list[RowError]]:
    """One data row as a staged contact, or None with every problem found (field, reason)."""
    return row_stager(columns, default_region)(cells, line)


@functools.lru_cache(maxsize=32)
def row_stager(columns: Columns, default_region: str | None) -> Callable[[list[str], int], StagerResult]:
    """`validate_row` for one header and default region, with the column positions bound once
    (it runs for every imported row). A missing column reads an empty cell past the header's."""
    width = columns.width
    i_first, i_last, i_company = (width if i is None else i for i in columns.text_cells)
    i_phone, i_email, i_zone = (width if i is None else i for i in (columns.phone, columns.email, columns.timezone))
    i_country, metadata_cells = columns.country, columns.metadata_cells
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
        metadata = [cells[i].strip() or None for i in metadata_cells]
        return (line, phone, email, first, last, company, zone, *metadata), errors

    return stage


class CsvRecords:
    """Feed bytes, get `(line, cells, error)` per record (line numbers from 1, blank lines skipped).

    `error` is the csv module's complaint about a line it could not read (then `cells` is empty).
    """

    def __init__(self, encoding: str = "utf-8") -> None:
        name = codecs.lookup(encoding).name
        self._decoder = codecs.getincrementaldecoder("utf-8-sig" if name == "utf-8" else name)(errors="replace")
        self._pending = ""
        self._line = 0  # physical lines consumed so far

    def feed(self, data: bytes, final: bool = False) -> Iterator[tuple[int, list[str], str | None]]:
        """Records completed by `data` (and, when `final`, whatever is left), one at a time (a
        chunk's records all alive at once would keep the garbage collector busy)."""
        text = self._pending + self._decoder.decode(data, final)
        if final:
            complete, self._pending = text, ""
        else:
            complete, self._pending = split_at_record_end(text)
        if not complete:
            return
        reader = csv.reader(io.StringIO(complete, newline=""))
        base, last = self._line, 0
        nul = "\x00" in complete  # PostgreSQL text cannot hold one: such a record is refused
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
            if nul and any("\x00" in cell for cell in cells):
                yield start, [], "contains a NUL character"
            elif len(cells) > 1 or (cells and cells[0].strip()):
                yield start, cells, None
        self._line = base + last


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
