"""A CSV file's text before it is parsed: the CSV options checked, the bytes decoded (checked as
UTF-8, or transcoded to it) with their lines counted, and the delimiter detected."""

from __future__ import annotations

import codecs
import io
from typing import NoReturn

from torchwork.core.errors import InputError

DELIMITERS = (",", ";", "\t", "|")  # the ones detected, in order of preference on a tie
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
DECIMALS = (".", ",")
SNIFF_BYTES, SNIFF_RECORDS = 64 << 10, 50
_CHUNK = 8 << 20  # bytes read, decoded and counted at a time


# ----------------------------------------------------------------- options
def csv_options(encoding: str | None, delimiter: str | None, decimal: str | None) -> dict[str, str | None]:
    """The CSV options checked, in the CLI's words; None stays None (the default, or detected)."""
    if encoding is not None:
        try:
            info = codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise InputError(f"--encoding {encoding!r}: unknown encoding (e.g. utf-8, latin-1, cp1252)") from None
        if not getattr(info, "_is_text_encoding", True):  # base64, zlib, rot13, ...
            raise InputError(f"--encoding {encoding!r}: not a text encoding (e.g. utf-8, latin-1, cp1252)")
    if delimiter is not None:
        delimiter = DELIMITER_NAMES.get(str(delimiter).lower(), delimiter)
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise InputError(f"--delimiter {delimiter!r}: expected one character other than a quote or a line break")
    if decimal is not None and decimal not in DECIMALS:
        raise InputError(f"--decimal {decimal!r}: expected '.' or ','")
    if decimal is not None and decimal == delimiter:
        raise InputError(f"--decimal {decimal!r} and --delimiter {delimiter!r} cannot be the same character")
    return {"encoding": encoding, "delimiter": delimiter, "decimal": decimal}


# --------------------------------------------------------------------- CSV
class _Text:
    """A CSV file's bytes as UTF-8, and its line breaks, counted as it is read.

    Blank lines (which the parser skips) and quoted line breaks each add a line feed that no
    row has, so ``lines == rows + 1`` exactly when there are none, and the lines map to rows;
    a bare carriage return (an old Mac line end, which the parser also takes as one) makes
    :attr:`lines_match_rows` False, as the count of line feeds would not see it.
    """

    def __init__(self, data: bytearray) -> None:
        self.data: bytearray | None = data
        self.newlines = 0  # line feeds
        self.returns = 0  # carriage returns
        self.crlf = 0  # carriage returns followed by a line feed
        self.ends_with_newline = False

    def scan(self, data: bytearray, start: int, end: int, source: str) -> None:
        """Count the line breaks in ``data[start:end]`` (no copy); a NUL byte means a binary file."""
        nul = data.find(b"\0", start, end)
        if nul >= 0:
            line = self.newlines + data.count(b"\n", start, nul) + 1
            raise InputError(
                f"{source}: line {line}: holds a NUL byte, so it is binary, not CSV text "
                "(text in UTF-16 needs --encoding utf-16)"
            )
        self.newlines += data.count(b"\n", start, end)
        behind = max(start - 1, 0)  # a CR LF may straddle the chunks
        if data.find(b"\r", behind, end) >= 0:
            self.returns += data.count(b"\r", start, end)
            self.crlf += data.count(b"\r\n", behind, end)

    def lines_match_rows(self, rows: int) -> bool:
        """Whether data row ``i`` (from 0) is on line ``i + 2``: one line per row after the header."""
        return self.returns == self.crlf and self.lines == rows + 1

    @property
    def lines(self) -> int:
        return self.newlines + (0 if self.ends_with_newline else 1)


def load_text(f: io.BufferedReader, source: str, encoding: str | None, size: int) -> _Text:
    """Read the file once, as UTF-8: checked (UTF-8) or transcoded chunk by chunk, its lines counted.

    Every byte that reaches the parser is valid UTF-8, so pyarrow never meets a byte it cannot
    decode (it reported those on stderr from inside a callback, before its own error). A UTF-8
    file is read into one buffer of its size, so the text costs the file's size and no more.
    """
    info = codecs.lookup(encoding or "utf-8")
    decoder = info.incrementaldecoder("strict")
    if info.name == "utf-8":
        data = bytearray(size)
        got = f.readinto(data)
        del data[got:]
        data += f.read()  # a file that grew since it was measured
        if encoding is None:
            _refuse_other_boms(bytes(data[:4]), source)
        text = _Text(data)
        with memoryview(data) as view:
            for start in range(0, len(data) + 1, _CHUNK):
                end = min(start + _CHUNK, len(data))
                try:
                    decoder.decode(view[start:end], end == len(data))
                except UnicodeDecodeError as exc:
                    _raise_bad_byte(exc, text.newlines, info.name, encoding, source)
                text.scan(data, start, end, source)
    else:
        text = _Text(data := bytearray())
        while True:
            chunk = f.read(_CHUNK)
            try:
                piece = decoder.decode(chunk, not chunk).encode("utf-8")
            except UnicodeDecodeError as exc:
                _raise_bad_byte(exc, text.newlines, info.name, encoding, source)
            except UnicodeError:  # a codec that yields lone surrogates, or raises the base class (utf-16, punycode)
                raise InputError(f"{source}: line {text.newlines + 1}: not valid {encoding} text") from None
            start = len(data)
            data += piece
            del piece
            text.scan(data, start, len(data), source)
            if not chunk:
                break
    text.ends_with_newline = data.endswith(b"\n")
    return text


def _raise_bad_byte(exc: UnicodeDecodeError, newlines: int, codec: str, encoding: str | None, source: str) -> NoReturn:
    """The line of the first byte that is not valid in the encoding, and what to do about it."""
    prefix = exc.object[: exc.start]  # the chunk up to the bad byte (and a partial character before it)
    before = codecs.decode(prefix, codec, "replace").count("\n")
    byte = exc.object[exc.start : exc.start + 1].hex().upper() or "?"
    name = "UTF-8 (the default encoding)" if encoding is None else f"{encoding} text"
    raise InputError(
        f"{source}: line {newlines + before + 1}: byte 0x{byte} is not valid {name}; "
        "pass --encoding with the file's encoding (e.g. --encoding latin-1, or cp1252)"
    ) from None


def _refuse_other_boms(head: bytes, source: str) -> None:
    """A UTF-16/32 byte-order mark in a file read as UTF-8: say which encoding it is."""
    for bom, name in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                      (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if head.startswith(bom):
            raise InputError(f"{source}: starts with a {name.upper()} byte-order mark; pass --encoding {name}")


def _records(sample: str, limit: int) -> list[str]:
    """The first ``limit`` non-empty records of ``sample``, with quoted text (and quoted line breaks) removed."""
    if '"' not in sample:
        lines = sample.split("\n")
    else:
        lines, quoted = [], False
        current: list[str] = []
        for c in sample:
            if c == '"':
                quoted = not quoted
            elif c == "\n" and not quoted:
                lines.append("".join(current))
                current = []
            elif not quoted:
                current.append(c)
            if len(lines) > limit:
                break
        lines.append("".join(current))
    return [r for r in (line.rstrip("\r") for line in lines) if r][:limit]


def sniff_delimiter(data: bytearray, decimal: str) -> str:
    """The delimiter among :data:`DELIMITERS` (but the decimal mark) that the header and the first records agree on."""
    sample = bytes(data[:SNIFF_BYTES]).decode("utf-8", "ignore")
    if len(data) > SNIFF_BYTES and "\n" in sample:  # drop the record cut off at the end
        sample = sample[: sample.rindex("\n")]
    records = _records(sample, SNIFF_RECORDS)
    if not records:
        return ","
    counts = [{d: r.count(d) for d in DELIMITERS} for r in records]
    header = counts[0]
    present = [d for d in DELIMITERS if header[d] > 0 and d != decimal]
    consistent = [d for d in present if all(c[d] == header[d] for c in counts[1:])]
    candidates = consistent or present
    if not candidates:
        return "," if decimal != "," else ";"  # one column
    return max(candidates, key=lambda d: (header[d], -DELIMITERS.index(d)))
