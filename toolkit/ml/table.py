"""Tabular data by column, in compact arrays: CSV files, CSV text and JSON records all end here.

A `Column` holds every cell as a float64 (NaN where the cell is missing or not a number) and,
only if some cells are not numbers, those cells as codes into its distinct texts. No per-cell
Python object outlives reading: a CSV is read in chunks of CHUNK_ROWS rows, each chunk's cells
converted to arrays by numpy, so memory stays a small multiple of the numbers themselves.
('?', empty and the other MISSING_TOKENS are missing cells.)
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from toolkit.errors import DataError

MISSING_TOKENS = frozenset({"", "?", "NA", "N/A", "nan", "NaN", "null"})
CANDIDATE_DELIMITERS = ",;\t|"
CHUNK_ROWS = 65_536
# Python's csv module refuses longer fields; a CSV of features never needs one.
MAX_FIELD_CHARS = csv.field_size_limit()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- values


def to_float(value: object) -> float | None:
    """A number from a CSV cell or JSON value; None for missing; ValueError otherwise
    (also for a number too large to be a float, e.g. a 400-digit integer)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("booleans are not numbers")
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            raise ValueError("is too large to be a number") from None
    text = str(value).strip()
    if text in MISSING_TOKENS:
        return None
    return float(text)


def category_key(value: object) -> str | None:
    """Canonical form of a categorical value, so 1, 1.0, '1' and '1.0' are one category."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    if text in MISSING_TOKENS:
        return None
    try:
        number = float(text)
    except (ValueError, OverflowError):
        return text
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return repr(number)


def sort_keys(values: Iterable[str]) -> list[str]:
    """Numbers in numeric order, otherwise text order."""
    values = list(values)
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


# ---------------------------------------------------------------- columns


@dataclass
class Column:
    numbers: np.ndarray  # float64; NaN: missing, or a text cell
    codes: np.ndarray | None = None  # int32 index into `texts` for text cells, -1 elsewhere; None: all numeric
    texts: tuple[str, ...] = ()
    first_text: tuple[int, str] | None = None  # (row, value) of the first cell that is not a number

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def numeric(self) -> bool:
        return self.codes is None

    @classmethod
    def from_cells(cls, cells: list, offset: int = 0, text: bool = True) -> Column:
        """`cells`: CSV texts (None: missing), or with text=False record values (float, int, str, bool
        or None). `offset` numbers the rows in errors."""
        try:  # the fast path: numpy parses every cell (None becomes NaN)
            numbers = np.array(cells, dtype=np.float64)
            if text or not any(isinstance(c, bool) for c in cells):
                return cls(numbers)
        except (ValueError, TypeError, OverflowError):
            pass
        numbers = np.full(len(cells), np.nan)
        codes = np.full(len(cells), -1, dtype=np.int32)
        texts: dict[str, int] = {}
        first_text = None
        for i, cell in enumerate(cells):
            try:
                number = to_float(cell)
            except ValueError:
                if isinstance(cell, int) and not isinstance(cell, bool):  # an integer beyond float: out of range
                    numbers[i] = math.inf if cell > 0 else -math.inf
                    continue
                text = str(cell).strip()
                codes[i] = texts.setdefault(text, len(texts))
                first_text = first_text or (offset + i, text if len(text) <= 40 else text[:37] + "...")
                continue
            if number is not None:
                numbers[i] = number
        if not texts:
            return cls(numbers)
        return cls(numbers, codes, tuple(texts), first_text)

    @classmethod
    def concat(cls, parts: list[Column]) -> Column:
        numbers = np.concatenate([p.numbers for p in parts]) if parts else np.empty(0)
        if all(p.numeric for p in parts):
            return cls(numbers)
        texts: dict[str, int] = {}
        code_parts = []
        for part in parts:
            if part.numeric:
                code_parts.append(np.full(len(part), -1, dtype=np.int32))
                continue
            remap = np.array([texts.setdefault(t, len(texts)) for t in part.texts] + [-1], dtype=np.int32)
            code_parts.append(remap[part.codes])  # code -1 picks the trailing -1
        first_text = next(p.first_text for p in parts if p.first_text is not None)
        return cls(numbers, np.concatenate(code_parts), tuple(texts), first_text)

    def take(self, rows: np.ndarray) -> Column:
        if self.numeric:
            return Column(self.numbers[rows])
        codes = self.codes[rows]
        present = np.flatnonzero(codes >= 0)
        first = (int(present[0]), self.texts[codes[present[0]]]) if len(present) else None
        return Column(self.numbers[rows], codes if first else None, self.texts if first else (), first)

    def present(self) -> np.ndarray:
        """True where the cell holds a value (a number or a text)."""
        mask = ~np.isnan(self.numbers)
        return mask if self.numeric else mask | (self.codes >= 0)

    def value(self, row: int) -> float | str | None:
        if not self.numeric and self.codes[row] >= 0:
            return self.texts[self.codes[row]]
        number = self.numbers[row]
        return None if math.isnan(number) else float(number)

    def categories(self) -> tuple[np.ndarray, list[str]]:
        """(codes, keys): each cell's category as an index into `keys` (-1: missing), with numbers and
        texts that mean the same category ('1', 1.0) merged by `category_key`."""
        keys: dict[str, int] = {}
        codes = np.full(len(self), -1, dtype=np.int64)
        numeric = ~np.isnan(self.numbers)
        distinct, inverse = np.unique(self.numbers[numeric], return_inverse=True)
        lookup = np.array([keys.setdefault(category_key(float(v)), len(keys)) for v in distinct], dtype=np.int64)
        codes[numeric] = lookup[inverse] if len(distinct) else -1
        if not self.numeric:
            text_keys = [category_key(t) for t in self.texts]
            lookup = np.array([-1 if k is None else keys.setdefault(k, len(keys)) for k in text_keys] + [-1], dtype=np.int64)
            text_cells = self.codes >= 0
            codes[text_cells] = lookup[self.codes[text_cells]]
        return codes, list(keys)


# ---------------------------------------------------------------- tables


@dataclass
class Table:
    columns: list[str]
    data: dict[str, Column]
    source: str
    delimiter: str = ","
    first_row: int = 0  # a chunk of a bigger file (iter_csv): the file's index of its first row

    def __len__(self) -> int:
        return len(self.data[self.columns[0]]) if self.columns else 0

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def column(self, name: str) -> Column:
        return self.data[name]

    def numbers(self, name: str) -> np.ndarray:
        """The column as float64 (NaN: missing); DataError if a cell is not a number."""
        column = self.data[name]
        if not column.numeric:
            row, value = column.first_text
            raise DataError(f"{self.source}: column '{name}' is not numeric ({self.row_name(row)} has {value!r}).")
        return column.numbers

    def row_name(self, row: int) -> str:
        """How errors name a row: the CSV line's row number (the header is row 1), or a record's index."""
        return f"record {row}" if self.delimiter == "" else f"row {self.first_row + row + 2}"

    def take(self, rows: np.ndarray) -> Table:
        return Table(self.columns, {name: column.take(rows) for name, column in self.data.items()}, self.source, self.delimiter)

    def records(self, rows: Iterable[int] | None = None) -> list[dict]:
        """Rows as {column: float | str | None} (for requests built from a dataset)."""
        rows = range(len(self)) if rows is None else rows
        return [{name: self.data[name].value(i) for name in self.columns} for i in rows]

    def append(self, other: Table) -> Table:
        """This table's rows, then `other`'s (its columns by name; columns it lacks are missing cells)."""
        n = len(other)
        data = {name: Column.concat([column, other.data[name] if name in other else Column(np.full(n, np.nan))])
                for name, column in self.data.items()}
        return Table(self.columns, data, self.source, self.delimiter)

    @classmethod
    def from_columns(cls, columns: dict[str, list], source: str) -> Table:
        """Records by column (JSON input, request bodies): values are numbers, texts or None."""
        data = {name: Column.from_cells(values, text=False) for name, values in columns.items()}
        return cls(list(columns), data, source, delimiter="")


# ---------------------------------------------------------------- CSV


def detect_delimiter(sample: str) -> str:
    """The candidate delimiter that splits the header and first lines into equal, >1 fields."""
    lines = [line for line in sample.splitlines() if line.strip()][:20]
    if not lines:
        raise DataError("the file is empty")
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=CANDIDATE_DELIMITERS).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in CANDIDATE_DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def read_csv(path: str | Path, delimiter: str | None = None) -> Table:
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return _read(handle, str(path), delimiter)
    except FileNotFoundError:
        raise DataError(f"{path}: dataset not found.") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a CSV file.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot read the dataset as UTF-8 text ({exc}).") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the dataset ({exc.strerror or exc}).") from None


def parse_csv(text: str, source: str, delimiter: str | None = None) -> Table:
    """CSV text with a header row; `source` only names it in errors."""
    return _read(io.StringIO(text.lstrip("\ufeff"), newline=""), source, delimiter)


def _read(handle, source: str, delimiter: str | None) -> Table:
    header, delimiter, chunks = _chunks(handle, source, delimiter, CHUNK_ROWS)
    parts: dict[str, list[Column]] = {name: [] for name in header}
    for offset, chunk in chunks:
        _add_chunk(parts, header, chunk, offset)
    data = {name: Column.concat(parts.pop(name)) for name in header}  # each column's chunks freed as it is joined
    return Table(header, data, source, delimiter)


def iter_csv(path: str | Path, delimiter: str | None = None,
             chunk_rows: int = 8192) -> tuple[list[str], Iterator[tuple[Table, list[list[str]]]]]:
    """A CSV file as (header, (table, its raw rows) of at most `chunk_rows` rows each), read as they
    are asked for: memory stays bounded by the chunk whatever the file's size. Row numbers in errors
    are the file's."""
    path = Path(path)
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror}).") from None
    try:
        header, delimiter, chunks = _chunks(handle, str(path), delimiter, chunk_rows)
    except BaseException:
        handle.close()  # a bad header: the rows are never asked for, and the file would stay open
        raise

    def tables() -> Iterator[tuple[Table, list[list[str]]]]:
        with handle:
            for offset, chunk in chunks:
                parts: dict[str, list[Column]] = {name: [] for name in header}
                _add_chunk(parts, header, chunk, 0)  # row numbers of the chunk; the table adds its offset
                yield Table(header, {name: parts[name][0] for name in header}, str(path), delimiter, offset), chunk

    return header, tables()


def _chunks(handle, source: str, delimiter: str | None, chunk_rows: int) -> tuple[list[str], str, Iterator[tuple[int, list[list[str]]]]]:
    """The header, the delimiter, and the data rows in chunks of `chunk_rows` as (offset of the first, rows)."""
    sample = handle.read(65_536)
    handle.seek(0)
    if "\0" in sample:
        raise DataError(f"{source}: holds NUL bytes; this is not a CSV text file.")
    try:
        delimiter = delimiter or detect_delimiter(sample)
    except DataError as exc:
        raise DataError(f"{source}: {exc}.") from None
    reader = csv.reader(handle, delimiter=delimiter)
    rows = _rows(reader, source)
    header = next(rows, None)
    if header is None:
        raise DataError(f"{source}: needs a header row and at least one data row, found no non-empty rows.")
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise DataError(f"{source}: the header must name every column once, got {header}.")

    def chunks() -> Iterator[tuple[int, list[list[str]]]]:
        chunk: list[list[str]] = []
        n = 0
        for row in rows:
            if len(row) != len(header):
                raise DataError(f"{source}: row {n + 2} (line {reader.line_num}) has {len(row)} fields but the header has "
                                f"{len(header)} (delimiter {delimiter!r}).")
            chunk.append(row)
            n += 1
            if len(chunk) == chunk_rows:
                yield n - len(chunk), chunk
                chunk = []
        if chunk:
            yield n - len(chunk), chunk
        if n == 0:
            raise DataError(f"{source}: needs a header row and at least one data row, found 1 non-empty row.")

    return header, delimiter, chunks()


def _rows(reader, source: str) -> Iterator[list[str]]:
    """Non-empty rows; a malformed line (NUL byte, a field over the csv module's limit) is a DataError."""
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                yield row
    except csv.Error as exc:
        raise DataError(f"{source}: line {reader.line_num}: {exc}.") from None


def _add_chunk(parts: dict[str, list[Column]], header: list[str], chunk: list[list[str]], offset: int) -> None:
    for index, name in enumerate(header):
        cells = [_cell(row[index]) for row in chunk]
        parts[name].append(Column.from_cells(cells, offset))


def _cell(text: str) -> str | None:
    text = text.strip()
    return None if text in MISSING_TOKENS else text
