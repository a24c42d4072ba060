"""Reading the user's data files: CSV, TSV, JSONL, JSON and Parquet.

Written on the standard library rather than ``datasets``/pandas because what
matters here is the error: a bad file must produce one line naming the file, the
line and the problem (a stray quote on line 812, a latin-1 byte on line 3), and
those readers report neither. Parquet, which has no lines, goes through pyarrow
(the ``parquet`` extra), imported only when a Parquet file is read.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdaptlabError

log = logging.getLogger("adaptlab")

FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet",
}


@dataclass
class Table:
    """Rows read from one source, with the line each row started on (for errors)."""

    source: str
    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int] | None = None

    def where(self, i: int) -> str:
        return f"line {self.lines[i]}" if self.lines else f"row {i + 1}"


def read_table(path: str | Path, encoding: str = "utf-8") -> Table:
    """Read a data file into a :class:`Table`, raising :class:`AdaptlabError` on any problem."""
    path = Path(path)
    if not path.exists():
        raise AdaptlabError(f"data file not found: {path}")
    if path.is_dir():
        raise AdaptlabError(f"data path {path} is a folder; give a CSV, TSV, JSONL, JSON or Parquet file")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise AdaptlabError(f"unsupported data file type '{path.suffix}' for {path}; use one of {', '.join(sorted(FORMATS))}")
    if path.stat().st_size == 0:
        raise AdaptlabError(f"data file {path} is empty")
    if kind == "parquet":
        table = _read_parquet(path)
    else:
        text = _decode(path, encoding)
        if not text.strip():
            raise AdaptlabError(f"data file {path} is empty")
        table = {"csv": _read_csv, "tsv": _read_tsv, "jsonl": _read_jsonl, "json": _read_json}[kind](text, str(path))
    if not table.rows:
        raise AdaptlabError(f"data file {path} has a header but no rows")
    return table


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or one clear line when it cannot be read (permissions, a folder, a vanished file)."""
    try:
        return path.read_bytes()
    except PermissionError:
        raise AdaptlabError(f"cannot read data file {path}: permission denied (check its owner and mode)") from None
    except OSError as e:
        raise AdaptlabError(f"cannot read data file {path}: {e.strerror or e}") from None


def _decode(path: Path, encoding: str) -> str:
    raw = read_bytes(path)
    if b"\x00" in raw[:8192] and not encoding.lower().replace("-", "").startswith("utf16"):
        raise AdaptlabError(f"data file {path} is binary, not text (it holds NUL bytes): is it really a {path.suffix} file? "
                            f"Save the data as CSV, TSV, JSONL, JSON or Parquet")
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise AdaptlabError(f"unknown text encoding '{encoding}'") from None
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise AdaptlabError(
            f"data file {path} is not valid {encoding}: byte 0x{raw[e.start]:02x} at line {line}; "
            f"re-save it as UTF-8 or pass --encoding latin-1"
        ) from None
    return text.removeprefix("\ufeff")  # BOM written by spreadsheet programs


def _read_csv(text: str, source: str, delimiter: str | None = None) -> Table:
    """Comma-separated unless the header line says otherwise (``;`` from European spreadsheets, tabs, ``|``)."""
    delimiter = delimiter or _delimiter(text, source)
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 28))  # long documents: texts are cut by tokens later, not here
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise AdaptlabError(f"data file {source} has no header row")
        header = [h.strip() for h in header]
        rows, lines = [], []
        start = reader.line_num + 1
        for record in reader:
            if not record or (len(record) == 1 and not record[0].strip()):
                start = reader.line_num + 1
                continue  # blank line
            if len(record) != len(header):
                raise AdaptlabError(
                    f"malformed row in {source} at line {start}: {len(record)} fields, the header has {len(header)}"
                )
            rows.append(dict(zip(header, record)))
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as e:
        raise AdaptlabError(f"malformed CSV in {source} at line {reader.line_num}: {e}") from None
    return Table(source, header, rows, lines)


def _delimiter(text: str, source: str) -> str:
    """The delimiter of a ``.csv`` file, sniffed from its header line (csv.Sniffer) among , ; tab and |."""
    header = text.split("\n", 1)[0]
    try:
        found = csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","
    if found != ",":
        log.info("%s: columns separated by %r (detected from the header line)", source, found)
    return found


def _read_tsv(text: str, source: str) -> Table:
    return _read_csv(text, source, delimiter="\t")


def _read_jsonl(text: str, source: str) -> Table:
    rows, lines, columns = [], [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise AdaptlabError(f"malformed JSON in {source} at line {number}: {e.msg}") from None
        if not isinstance(row, dict):
            raise AdaptlabError(f"line {number} of {source} is not a JSON object")
        rows.append(row)
        lines.append(number)
        columns.update(dict.fromkeys(row))
    return Table(source, list(columns), rows, lines)


def _read_json(text: str, source: str) -> Table:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AdaptlabError(f"malformed JSON in {source} at line {e.lineno}: {e.msg}") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1 and all(isinstance(r, dict) for r in lists[0]):
            data = lists[0]  # {"data": [{...}, ...]}
        elif lists and len(lists) == len(data) and len({len(v) for v in lists}) == 1:
            data = [dict(zip(data, values)) for values in zip(*data.values())]  # columns
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise AdaptlabError(
            f"{source} must hold a list of objects, an object with one such list, or an object of equal-length columns"
        )
    columns = list(dict.fromkeys(k for row in data for k in row))
    return Table(source, columns, data, None)


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise AdaptlabError("reading Parquet needs pyarrow: pip install 'adaptlab[parquet]'") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several unrelated types for corrupt files
        raise AdaptlabError(f"cannot read Parquet file {path}: {str(e).splitlines()[0]}") from None
    return Table(str(path), table.column_names, table.to_pylist(), None)
