"""Strict parsing of the zip archive ``torch.save`` writes: every entry read once, or the file refused
wherever two zip readers could read it differently."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from torchwork.core.errors import InputError
from torchwork.files.inert import refuse_file, shown

# ----------------------------------------------------------------- zip files
_EOCD = struct.Struct("<4sHHHHIIH")
_Z64_LOCATOR = struct.Struct("<4sIQI")
_Z64_EOCD = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_FLAGS_OK = 0x0008 | 0x0800  # sizes in a data descriptor; UTF-8 names
_U32, _U16 = 0xFFFF_FFFF, 0xFFFF


@dataclass
class _Entry:
    name: str
    start: int  # where its data begins in the file
    size: int


def _zip64_values(extra: bytes, values: list[int], widths: list[int], source: str, name: str) -> list[int]:
    """``values`` with each one at its 32/16-bit maximum replaced from the zip64 extra field, in order."""
    blocks: dict[int, bytes] = {}
    pos = 0
    while pos < len(extra):
        if pos + 4 > len(extra):
            refuse_file(source, f"entry {shown(name)} has a malformed extra field")
        tag, size = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + size > len(extra) or tag in blocks:
            refuse_file(source, f"entry {shown(name)} has a malformed extra field")
        blocks[tag] = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
    z64, used, out = blocks.get(1, b""), 0, []
    for value, width in zip(values, widths, strict=True):
        if value == (_U32 if width == 8 else _U16):
            if used + width > len(z64):
                refuse_file(source, f"entry {shown(name)} has a size past 4 GiB but no zip64 field for it")
            value = int.from_bytes(z64[used : used + width], "little")
            used += width
        out.append(value)
    return out


def _entry_name(raw_name: bytes, source: str) -> str:
    if b"\0" in raw_name:
        refuse_file(source, f"an entry name holds a NUL byte ({shown(raw_name)}): zip readers disagree on such names")
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError:
        refuse_file(source, f"an entry name is not UTF-8 ({shown(raw_name)})")
    if not name or not name.isprintable() or "\\" in name:
        refuse_file(source, f"an entry name has odd characters ({shown(name)})")
    return name


def _end_records(raw: bytes, source: str) -> tuple[int, int, int, int]:
    """``(entries, cd_offset, cd_size, cd_end)`` from the end records, which must close the file exactly."""
    n = len(raw)
    if n < 22 or raw[n - 22 : n - 18] != b"PK\x05\x06":
        raise InputError(f"{source}: damaged or not a PyTorch file (no zip end record at the end of the file)")
    _sig, disk, cd_disk, here, total, cd_size, cd_off, comment = _EOCD.unpack_from(raw, n - 22)
    if comment:
        refuse_file(source, "its zip end record declares a comment past the end of the file")
    cd_end = n - 22
    if n >= 42 and raw[n - 42 : n - 38] == b"PK\x06\x07":
        _sig, z64_disk, z64_off, disks = _Z64_LOCATOR.unpack_from(raw, n - 42)
        if z64_disk or disks != 1:
            refuse_file(source, "its archive spans several disks")
        if z64_off + 56 != n - 42 or raw[z64_off : z64_off + 4] != b"PK\x06\x06":
            refuse_file(source, "its zip64 end record is not where its locator says")
        _sig, size, _made, _need, d1, d2, here64, total64, cd_size64, cd_off64 = _Z64_EOCD.unpack_from(raw, z64_off)
        if size != 44 or d1 or d2:
            refuse_file(source, "its zip64 end record is malformed")
        for short, full, top in ((here, here64, _U16), (total, total64, _U16), (cd_size, cd_size64, _U32),
                                 (cd_off, cd_off64, _U32)):  # fmt: skip
            if short not in (top, full):
                refuse_file(source, "its zip64 and classic end records disagree")
        here, total, cd_size, cd_off, cd_end = here64, total64, cd_size64, cd_off64, z64_off
    if disk or cd_disk or here != total:
        refuse_file(source, "its archive spans several disks")
    if cd_off + cd_size != cd_end:
        refuse_file(source, "its central directory does not end where the end record begins")
    return total, cd_off, cd_size, cd_end


def parse_torch_zip(raw: bytes, source: str) -> tuple[str, list[_Entry]]:
    """The archive's prefix and entries, read once, strictly; refused wherever two zip readers could differ.

    Refused: names with NUL bytes, odd characters or a prefix of their own; names equal without case
    (torch's reader, miniz, compares them so); a local header that disagrees with the central
    directory; compressed, encrypted or multi-disk entries; entries that overlap, leave gaps, or do
    not tile the file up to the central directory; anything before the first entry or after the end
    record. Entries come back in the order of the file.
    """
    total, cd_off, _cd_size, cd_end = _end_records(raw, source)
    central, pos = [], cd_off
    for _ in range(total):
        if pos + 46 > cd_end or raw[pos : pos + 4] != b"PK\x01\x02":
            refuse_file(source, "its central directory is malformed")
        _sig, _made, _need, flags, method, _t, _d, crc, csize, usize, nlen, elen, clen, disk, _ia, _ea, offset = (
            _CENTRAL.unpack_from(raw, pos)
        )
        raw_name = raw[pos + 46 : pos + 46 + nlen]
        extra = raw[pos + 46 + nlen : pos + 46 + nlen + elen]
        pos += 46 + nlen + elen + clen
        if pos > cd_end:
            refuse_file(source, "its central directory is malformed")
        name = _entry_name(raw_name, source)
        usize, csize, offset, disk = _zip64_values(extra, [usize, csize, offset, disk], [8, 8, 8, 4], source, name)
        if flags & 0x0041:
            refuse_file(source, f"entry {shown(name)} is encrypted")
        if method != 0 or csize != usize:
            refuse_file(source, f"entry {shown(name)} is compressed (method {method}); torch.save stores entries as is")
        if flags & ~_FLAGS_OK:
            refuse_file(source, f"entry {shown(name)} has zip flags {flags:#06x}, which torch.save never writes")
        if disk:
            refuse_file(source, "its archive spans several disks")
        central.append((offset, name, raw_name, flags, crc, usize))
    if pos != cd_end:
        refuse_file(source, "its central directory holds more than its entries")

    folded: set[bytes] = set()
    for _off, name, raw_name, *_ in central:
        if raw_name.lower() in folded:
            refuse_file(source, f"two entries are named {shown(name)} (torch compares names without case)")
        folded.add(raw_name.lower())
    prefix = central[0][1].partition("/")[0] if central else ""
    if not central or not all(c[1].startswith(prefix + "/") and len(c[1]) > len(prefix) + 1 for c in central):
        raise InputError(f"{source}: a zip file, but not one written by torch.save (entries outside one folder)")

    entries, expected = [], 0
    central.sort(key=lambda c: c[0])
    for i, (offset, name, raw_name, flags, crc, size) in enumerate(central):
        following = central[i + 1][0] if i + 1 < len(central) else cd_off
        if offset != expected:
            what = "overlaps the entry before it" if offset < expected else "leaves unexplained bytes before it"
            refuse_file(source, f"entry {shown(name)} {what}")
        if offset + 30 > cd_off or raw[offset : offset + 4] != b"PK\x03\x04":
            refuse_file(source, f"entry {shown(name)} has no local header where the central directory says")
        _sig, _need, lflags, lmethod, _t, _d, lcrc, lcsize, lusize, nlen, elen = _LOCAL.unpack_from(raw, offset)
        lname = raw[offset + 30 : offset + 30 + nlen]
        if lname != raw_name:
            refuse_file(source, f"entry {shown(name)} is named {shown(lname)} in its local header")
        if (lflags, lmethod) != (flags, 0):
            refuse_file(source, f"entry {shown(name)} has other flags or compression in its local header")
        lusize, lcsize = _zip64_values(raw[offset + 30 + nlen : offset + 30 + nlen + elen], [lusize, lcsize], [8, 8],
                                       source, name)  # fmt: skip
        start = offset + 30 + nlen + elen
        end = start + size
        if end > following:
            refuse_file(source, f"entry {shown(name)} overlaps the entry after it")
        if flags & 0x0008:  # sizes follow the data, in a descriptor
            if lcrc not in (0, crc) or lusize not in (0, size) or lcsize not in (0, size):
                refuse_file(source, f"entry {shown(name)} has other sizes in its local header")
            end = _descriptor_end(raw, end, following, crc, size)
            if end is None:
                refuse_file(source, f"entry {shown(name)} has no data descriptor that matches the central directory")
        elif (lcrc, lusize, lcsize) != (crc, size, size):
            refuse_file(source, f"entry {shown(name)} has other sizes in its local header")
        expected = end
        entries.append(_Entry(name, start, size))
    if expected != cd_off:
        refuse_file(source, "its archive holds unexplained bytes before the central directory")
    return prefix, entries


def _descriptor_end(raw: bytes, pos: int, following: int, crc: int, size: int) -> int | None:
    """Where the data descriptor at ``pos`` ends, if exactly one form of it leads to ``following``."""
    for signed, wide in ((True, False), (False, False), (True, True), (False, True)):
        length = (4 if signed else 0) + 4 + (16 if wide else 8)
        if pos + length != following or (signed and raw[pos : pos + 4] != b"PK\x07\x08"):
            continue
        body = raw[pos + (4 if signed else 0) : following]
        fields = struct.unpack("<IQQ" if wide else "<III", body)
        if fields == (crc, size, size):
            return following
    return None
