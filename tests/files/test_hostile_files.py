"""Hostile weight files (issue 11): archives two zip readers read differently, sizes that lie, headers
too large, files that never end. Each is real bytes; each is refused with one line, fast, within a
memory limit, by ``load_weights`` and by ``torchwork inspect`` in a new process. Beside each attack,
the same construction with honest contents loads, so a refusal is the attack's doing."""

from __future__ import annotations

import collections
import io
import os
import pickle
import resource
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.support import TUTORIAL_FIXTURES
from torchwork.core.errors import InputError, UnsafeFileError
from torchwork.files import weights as safeload
from torchwork.files.weights import load_weights, save_weights_bytes
from torchwork.report.inspect import describe_weights, tensor_summary

GIB = 1 << 30


# ------------------------------------------------------------ crafting pickles
class Storage:
    """Pickles as torch.save's persistent id for a storage: ('storage', type, key, location, numel)."""

    def __init__(self, key: str, numel: int, stype: object = torch.FloatStorage, location: str = "cpu") -> None:
        self.key, self.numel, self.stype, self.location = key, numel, stype, location


class Rebuild:
    """Pickles as a call ``func(*args)``: how torch.save writes a tensor (``_rebuild_tensor_v2``); with
    ``state``, a BUILD follows."""

    def __init__(self, *args: object, func: Callable[..., object] = torch._utils._rebuild_tensor_v2,
                 state: object = None) -> None:  # fmt: skip
        self.args, self.func, self.state = args, func, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def tensor(storage: Storage, offset: int, size: tuple, stride: tuple) -> Rebuild:
    return Rebuild(storage, offset, size, stride, False, collections.OrderedDict())


class _Pickler(pickle.Pickler):
    legacy = False

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            pid = ("storage", obj.stype, obj.key, obj.location, obj.numel)
            return (*pid, None) if self.legacy else pid
        return None


def pickle_state(state: dict, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    pickler = _Pickler(buf, protocol=2)
    pickler.legacy = legacy
    pickler.dump(collections.OrderedDict(state))
    return buf.getvalue()


# ---------------------------------------------------------------- crafting zips
@dataclass
class Member:
    """One zip entry, written by hand; ``local_name``/``offset``/``flags``/``method`` can lie."""

    name: bytes
    data: bytes
    local_name: bytes | None = None
    offset: int | None = None  # where the central directory says its local header is
    flags: int = 0
    method: int = 0
    write_local: bool = True


LOCAL = struct.Struct("<4sHHHHHIIIHH")  # signature, version, flags, method, time, date, crc, sizes, name, extra
CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # ... comment, disk, attributes, local header offset
END = struct.Struct("<4sHHHHIIH")


def build_zip(members: list[Member], gap: bytes = b"", tail: bytes = b"") -> bytes:
    """A plain stored zip (no zip64, no data descriptors): the way many zip tools write one."""
    out, offsets = bytearray(), []
    for m in members:
        offsets.append(len(out) if m.write_local else None)
        if m.write_local:
            name, size, crc = m.name if m.local_name is None else m.local_name, len(m.data), zlib.crc32(m.data)
            out += LOCAL.pack(b"PK\x03\x04", 20, m.flags, m.method, 0, 0x21, crc, size, size, len(name), 0)
            out += name + m.data + gap
    start = len(out)
    for m, offset in zip(members, offsets, strict=True):
        where, size, crc = m.offset if m.offset is not None else offset, len(m.data), zlib.crc32(m.data)
        fields = (20, 20, m.flags, m.method, 0, 0x21, crc, size, size, len(m.name), 0, 0, 0, 0, 0, where)
        out += CENTRAL.pack(b"PK\x01\x02", *fields) + m.name
    out += END.pack(b"PK\x05\x06", 0, 0, len(members), len(members), len(out) - start, start, 0)
    return bytes(out) + tail


def crafted(state: dict, data: dict[str, bytes], pkl: bytes | None = None) -> list[Member]:
    """The members of a torch.save archive for ``state``, whose storages hold ``data``."""
    members = [Member(b"archive/data.pkl", pickle_state(state) if pkl is None else pkl)]
    members += [Member(f"archive/data/{key}".encode(), value) for key, value in data.items()]
    return [*members, Member(b"archive/version", b"3\n")]


def saved(state: dict, **kw) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf, **kw)
    return buf.getvalue()


def torch_members(raw: bytes) -> list[Member]:
    """The entries of a genuine torch.save archive, read with zipfile (trusted here: torch wrote it)."""
    archive = zipfile.ZipFile(io.BytesIO(raw))
    return [Member(i.filename.encode(), archive.read(i)) for i in archive.infolist()]


FLOATS = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
HONEST = {"w": tensor(Storage("0", 4), 0, (2, 2), (2, 1))}
# torch's weights_only unpickler allows builtins.bytearray: this pickle asks it for 3 GiB.
BYTEARRAY_BOMB = b"\x80\x02cbuiltins\nbytearray\n\x8a\x05\x00\x00\x00\xc0\x00\x85R."


def legacy(state: dict, records: dict[str, tuple[int, bytes]], keys: list[str] | None = None) -> bytes:
    """A pre-zip torch.save stream by hand: magic, protocol, system info, the object, the keys, the storages."""
    head = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    body = pickle_state(state, legacy=True) + pickle.dumps(list(records) if keys is None else keys, protocol=2)
    return head + body + b"".join(struct.pack("<q", count) + data for count, data in records.values())


def safetensors_with_header(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


# ------------------------------------------------------------------- the attacks
def _write(name: str, raw: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(raw)
        return tmp / name

    return make


def _big_safetensors_header(tmp: Path) -> Path:
    """80 MB of real JSON header (an 80 MB metadata string): parsed whole, it took 2 GB and 32 s."""
    text = b'{"__metadata__":{"x":"' + b"a" * 80_000_000 + b'"}}'
    path = tmp / "big-header.safetensors"
    path.write_bytes(safetensors_with_header(text))
    return path


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "model.pth")
    return tmp / "model.pth"


def _link_to_dev_zero(tmp: Path) -> Path:
    (tmp / "model.pth").symlink_to("/dev/zero")
    return tmp / "model.pth"


def _honest_members() -> list[Member]:
    return crafted(HONEST, {"0": FLOATS})


def _overlapping() -> bytes:
    """data/0's local header lies inside data.pkl's bytes: two entries share bytes."""
    inner = build_zip([Member(b"archive/data/0", FLOATS)])[: 30 + len(b"archive/data/0") + len(FLOATS)]
    offset = 30 + len(b"archive/data.pkl") + len(pickle_state(HONEST))
    return build_zip(
        [
            Member(b"archive/data.pkl", pickle_state(HONEST) + inner),
            Member(b"archive/version", b"3\n"),
            Member(b"archive/data/0", FLOATS, offset=offset, write_local=False),
        ]
    )


def _many_views() -> bytes:
    """One 1 MiB storage viewed whole by 100 tensors: 100 MiB to summarise from a 1 MiB file."""
    storage = Storage("0", 1 << 18)
    state = {f"t{i}": tensor(storage, 0, (1 << 18,), (1,)) for i in range(100)}
    return build_zip(crafted(state, {"0": bytes(1 << 20)}))


def _deflated() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for m in torch_members(saved({"w": torch.ones(4)})):
            z.writestr(m.name.decode(), m.data)
    return out.getvalue()


def _set_by_build() -> Rebuild:
    """An honest 4-element tensor, then BUILD with a stride-0 20000x20000 view: torch would call set_()."""
    return Rebuild(_S, 0, (4,), (1,), False, collections.OrderedDict(), state=(_S, 0, (20000, 20000), (0, 0)))


def _shared_list(depth: int) -> list:
    """A list whose repr would be 2**depth long: pickle shares each level through its memo."""
    value: list = []
    for _ in range(depth):
        value = [value, value]
    return value


def _pickle_only(pkl: bytes) -> bytes:
    return build_zip([Member(b"archive/data.pkl", pkl), Member(b"archive/version", b"3\n")])


def _append_flood() -> bytes:
    """An empty list, then batches of 1000 Nones appended: 16 MiB of cheap opcodes, none on the stack for long."""
    batch = b"(" + b"N" * 1000 + b"e"
    return b"\x80\x02]" + batch * ((16 << 20) // len(batch) - 1) + b"."


def _flagged(flags: int) -> bytes:
    return build_zip([Member(m.name, m.data, flags=flags) for m in _honest_members()])


_S = Storage("0", 4)
ATTACKS: dict[str, tuple[Callable[[Path], Path], type[Exception], str]] = {
    # 1. archives that zipfile and torch's reader (miniz) read differently
    "nul-in-name": (
        _write(
            "m.pth",
            build_zip(
                [
                    Member(b"archive/data.pkl", BYTEARRAY_BOMB),
                    *_honest_members()[1:],
                    Member(b"archive/data.pkl\0junk", pickle_state(HONEST)),
                ]
            ),
        ),
        UnsafeFileError,
        "has a NUL byte in its name",
    ),
    "duplicate-name": (
        _write("m.pth", build_zip([Member(b"archive/data.pkl", BYTEARRAY_BOMB), *_honest_members()])),
        UnsafeFileError,
        "two entries are named",
    ),
    "name-differing-in-case": (
        _write("m.pth", build_zip([Member(b"archive/DATA.PKL", BYTEARRAY_BOMB), *_honest_members()])),
        UnsafeFileError,
        "without case",
    ),
    "local-name-differs": (
        _write(
            "m.pth",
            build_zip(
                [
                    Member(b"archive/data.pkl", pickle_state(HONEST), local_name=b"archive/data.pkX"),
                    *_honest_members()[1:],
                ]
            ),
        ),
        UnsafeFileError,
        "named otherwise in its local header",
    ),
    "bytes-after-the-end": (
        _write("m.pth", build_zip(_honest_members(), tail=b"junk")),
        InputError,
        "no zip end record at the end",
    ),
    "compressed": (_write("m.pth", _deflated()), UnsafeFileError, "is compressed"),
    "encrypted": (_write("m.pth", _flagged(0x1)), UnsafeFileError, "is encrypted"),
    "starts-PK-05-06": (
        _write("m.pth", b"PK\x05\x06" + saved({"w": torch.ones(4)})[4:]),
        UnsafeFileError,
        "zip signature",
    ),
    "starts-PK-01-02": (_write("m.pth", b"PK\x01\x02" + bytes(60)), UnsafeFileError, "zip signature"),
    "unknown-entry": (
        _write("m.pth", build_zip([*_honest_members(), Member(b"archive/constants.pkl", b"\x80\x02N.")])),
        InputError,
        "TorchScript archives",
    ),
    # 2. sizes that lie
    "stride-0-20000x20000": (
        _write(
            "m.pth", build_zip(crafted({"w": tensor(Storage("0", 1), 0, (20000, 20000), (0, 0))}, {"0": FLOATS[:4]}))
        ),
        UnsafeFileError,
        "has 400000000 elements, more than its storage holds (1)",
    ),
    "storage-of-10^12-elements": (
        _write("m.pth", build_zip(crafted({"w": tensor(Storage("0", 10**12), 0, (4,), (1,))}, {"0": FLOATS}))),
        InputError,
        "does not match expected size (4000000000000 bytes",
    ),
    "storage-400MB-in-64-bytes": (
        _write("m.pth", build_zip(crafted({"w": tensor(Storage("0", 10**8), 0, (16,), (1,))}, {"0": bytes(64)}))),
        InputError,
        "record size (64 bytes) does not match expected size (400000000 bytes",
    ),
    "view-past-its-storage": (
        _write("m.pth", build_zip(crafted({"w": tensor(_S, 3, (2, 2), (2, 1))}, {"0": FLOATS}))),
        InputError,
        "not a readable PyTorch file",
    ),
    "negative-stride": (
        _write("m.pth", build_zip(crafted({"w": tensor(_S, 3, (4,), (-1,))}, {"0": FLOATS}))),
        InputError,
        "overflowed with sizes=[4] and strides=[-1]",
    ),
    "negative-size": (
        _write("m.pth", build_zip(crafted({"w": tensor(_S, 0, (-1, 4), (4, 1))}, {"0": FLOATS}))),
        InputError,
        "not a readable PyTorch file",
    ),
    "negative-offset": (
        _write("m.pth", build_zip(crafted({"w": tensor(_S, -2, (4,), (1,))}, {"0": FLOATS}))),
        InputError,
        "invalid storage offset -2",
    ),
    "size-as-text": (
        _write("m.pth", build_zip(crafted({"w": tensor(_S, 0, "4", (1,))}, {"0": FLOATS}))),
        InputError,
        "set_() received an invalid combination",
    ),
    "size-as-float": (
        _write("m.pth", build_zip(crafted({"w": tensor(_S, 0, (4.0,), (1,))}, {"0": FLOATS}))),
        InputError,
        "set_() received an invalid combination",
    ),
    "too-few-arguments": (
        _write("m.pth", build_zip(crafted({"w": Rebuild(_S, 0, (4,))}, {"0": FLOATS}))),
        InputError,
        "missing 3 required positional arguments",
    ),
    "requires-grad-as-int": (
        _write("m.pth", build_zip(crafted({"w": Rebuild(_S, 0, (4,), (1,), 1, {})}, {"0": FLOATS}))),
        InputError,
        "requires_grad must be a bool",
    ),
    "rebuild-from-an-int": (
        _write("m.pth", build_zip(crafted({"w": tensor(7, 0, (4,), (1,))}, {"0": FLOATS}))),
        InputError,
        "not a readable PyTorch file",
    ),
    "100-views-of-one-storage": (_write("m.pth", _many_views()), UnsafeFileError, "times the file's size"),
    "legacy-storage-of-10^12-elements": (
        _write("m.pth", legacy({"w": tensor(Storage("1", 10**12), 0, (4,), (1,))}, {"1": (10**12, FLOATS)})),
        UnsafeFileError,
        "a legacy (PyTorch < 1.6) torch.save stream",
    ),
    "legacy-record-disagrees": (
        _write("m.pth", legacy({"w": tensor(Storage("1", 4), 0, (4,), (1,))}, {"1": (10**9, FLOATS)})),
        UnsafeFileError,
        "a legacy (PyTorch < 1.6) torch.save stream",
    ),
    "legacy-bytes-after-the-end": (
        _write("m.pth", legacy({"w": tensor(Storage("1", 4), 0, (4,), (1,))}, {"1": (4, FLOATS + b"junk")})),
        UnsafeFileError,
        "a legacy (PyTorch < 1.6) torch.save stream",
    ),
    # arguments that torch would turn into something unchecked
    "BUILD-on-a-tensor": (
        _write("m.pth", build_zip(crafted({"w": _set_by_build()}, {"0": FLOATS}))),
        UnsafeFileError,
        "more than its storage holds (4)",
    ),
    "backward-hooks": (
        _write(
            "m.pth",
            build_zip(
                crafted({"w": Rebuild(_S, 0, (4,), (1,), False, {0: torch._utils._rebuild_tensor})}, {"0": FLOATS})
            ),
        ),
        UnsafeFileError,
        "names torch._utils._rebuild_tensor, which a state_dict never holds",
    ),
    "parameter-with-attributes": (
        _write(
            "m.pth",
            build_zip(
                crafted(
                    {
                        "w": Rebuild(
                            tensor(_S, 0, (4,), (1,)),
                            False,
                            collections.OrderedDict(),
                            {"data": tensor(_S, 0, (2,), (1,))},
                            func=torch._utils._rebuild_parameter_with_state,
                        )
                    },
                    {"0": FLOATS},
                )
            ),
        ),
        UnsafeFileError,
        "names torch._utils._rebuild_parameter_with_state",
    ),
    "size-of-a-5000-digit-integer": (
        _write("m.pth", build_zip(crafted({"w": tensor(_S, 0, (10**5000,), (1,))}, {"0": FLOATS}))),
        UnsafeFileError,
        "LONG4",
    ),
    "offset-a-list-shared-2^60-ways": (
        _write("m.pth", build_zip(crafted({"w": tensor(_S, _shared_list(60), (4,), (1,))}, {"0": FLOATS}))),
        InputError,
        "set_() received an invalid combination",
    ),
    # pickles that build without end: bounded in memory and time
    "pickle-of-12M-DUPs": (
        _write("m.pth", _pickle_only(b"\x80\x02N" + b"2" * 12_000_000 + b".")),
        UnsafeFileError,
        "values on its stack",
    ),
    "pickle-of-3M-empty-dicts": (
        _write("m.pth", _pickle_only(b"\x80\x02" + b"}" * 3_000_000 + b".")),
        UnsafeFileError,
        "values on its stack",
    ),
    "pickle-of-200k-nested-marks": (
        _write("m.pth", _pickle_only(b"\x80\x02" + b"(" * 200_000 + b".")),
        UnsafeFileError,
        "values on its stack",
    ),
    "pickle-appending-16M-items": (
        _write("m.pth", _pickle_only(_append_flood())),
        UnsafeFileError,
        "run past 4000000 opcodes",
    ),
    "pickle-of-17MB": (
        _write("m.pth", _pickle_only(b"\x80\x02N" + b"0" * (17 << 20) + b".")),
        UnsafeFileError,
        "its data.pkl holds 17825796 bytes, over the limit of 16777216",
    ),
    "legacy-stride-0": (
        _write("m.pth", legacy({"w": tensor(Storage("1", 1), 0, (20000, 20000), (0, 0))}, {"1": (1, FLOATS[:4])})),
        UnsafeFileError,
        "a legacy (PyTorch < 1.6) torch.save stream",
    ),
    "safetensors-80MB-header": (_big_safetensors_header, UnsafeFileError, "over the limit of 16777216"),
    "safetensors-header-past-the-end": (
        _write("m.safetensors", struct.pack("<Q", 4096) + b'{"a":1}'),
        InputError,
        "header declares 4096 bytes",
    ),
    "safetensors-duplicate-keys": (
        _write("m.safetensors", safetensors_with_header(b'{"__metadata__":{"k":"a"},"__metadata__":{"k":"b"}}')),
        InputError,
        "duplicate key",
    ),
    # not files at all
    "dev-zero": (lambda tmp: Path("/dev/zero"), InputError, "is a character device, not a regular file"),
    "symlink-to-dev-zero": (_link_to_dev_zero, InputError, "is a character device"),
    "fifo": (_fifo, InputError, "is a FIFO, not a regular file"),
}
# Zip oddities that every zip reader reads alike (each entry is found through the central directory, inside the
# file, stored): they load what their honest twin holds, bounded by the file's size, and run nothing.
HARMLESS: dict[str, Callable[[Path], Path]] = {
    "overlapping-entries": _write("m.pth", _overlapping()),
    "hidden-bytes-between-entries": _write("m.pth", build_zip(_honest_members(), gap=b"\0" * 16)),
    "odd-flags": _write("m.pth", _flagged(0x2)),
    "unused-storage": _write("m.pth", build_zip([*_honest_members(), Member(b"archive/data/7", bytes(8))])),
    "one-key-two-dtypes": _write(
        "m.pth",
        build_zip(
            crafted(
                {"a": tensor(_S, 0, (4,), (1,)), "b": tensor(Storage("0", 2, torch.DoubleStorage), 0, (2,), (1,))},
                {"0": FLOATS},
            )
        ),
    ),
}

CLI_ATTACKS = [
    "nul-in-name",
    "duplicate-name",
    "compressed",
    "starts-PK-05-06",
    "stride-0-20000x20000",
    "storage-of-10^12-elements",
    "storage-400MB-in-64-bytes",
    "size-as-text",
    "100-views-of-one-storage",
    "legacy-storage-of-10^12-elements",
    "pickle-of-3M-empty-dicts",
    "safetensors-80MB-header",
    "dev-zero",
    "fifo",
]


# A guard against an attack that runs unbounded (minutes, or until memory runs out), not a speed test: 4M
# opcodes, the scan's limit for one file (~130k tensors), take ~2.5 s on an idle machine, the rest well under 1 s.
OPCODE_FLOODS = {"pickle-appending-16M-items"}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_load_weights_refuses_each_attack_in_one_line_and_fast(tmp_path, name):
    make, error, fragment = ATTACKS[name]
    path = make(tmp_path)
    start = time.perf_counter()
    with pytest.raises(error) as caught:
        load_weights(path)
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert type(caught.value) is error, repr(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert fragment in message, message
    if error is UnsafeFileError:
        assert "refused" in message and message.endswith("nothing was run"), message
    assert elapsed < (60.0 if name in OPCODE_FLOODS else 30.0), f"{name}: {elapsed:.2f} s"


def test_a_directory_is_refused():
    with pytest.raises(InputError, match=r"is a folder, not a weights file"):
        load_weights(TUTORIAL_FIXTURES)


# --------------------------------------------------- the attacks are real
def test_BUILD_on_a_tensor_makes_torch_resize_it_unchecked(tmp_path):
    """Why BUILD on a tensor is refused: torch's weights_only unpickler calls set_() with its state."""
    raw = ATTACKS["BUILD-on-a-tensor"][0](tmp_path).read_bytes()
    with zipfile.ZipFile(io.BytesIO(raw)) as z:  # our own file: zipfile reads it as torch does
        assert z.read("archive/data.pkl") == pickle_state({"w": _set_by_build()})
    state = torch.load(io.BytesIO(raw), weights_only=True)
    assert state["w"].shape == (20000, 20000) and state["w"].stride() == (0, 0)


def test_a_file_starting_with_another_zip_signature_is_told_apart():
    """torch.load tells a zip by PK\\x03\\x04 only: anything else starting with PK is not read as an archive."""
    assert safeload.sniff(b"PK\x05\x06" + bytes(18)) == "zip-other"
    assert safeload.sniff(b"PK\x03\x04" + bytes(18)) == "zip"


# --------------------------------------- honest twins of the attacks load
def _loads(tmp_path: Path, raw: bytes, name: str = "m.pth") -> dict[str, torch.Tensor]:
    (tmp_path / name).write_bytes(raw)
    return load_weights(tmp_path / name).tensors


def test_the_hand_built_archive_loads_when_honest(tmp_path):
    """The zips above come from this builder; with honest contents (and the names the attacks reuse) it loads."""
    state = _loads(tmp_path, build_zip(_honest_members()))
    assert state["w"].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    state = _loads(tmp_path, build_zip([Member(m.name, m.data, flags=0x800) for m in _honest_members()]))
    assert state["w"].tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_an_archive_rewritten_by_zipfile_loads(tmp_path):
    """A torch.save file copied entry by entry by zipfile (stored, no alignment padding) loads the same tensors."""
    original = saved({"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([7, 8])})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for m in torch_members(original):
            z.writestr(m.name.decode(), m.data)
    assert out.getvalue() != original
    state = _loads(tmp_path, out.getvalue())
    assert state["w"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and state["b"].tolist() == [7, 8]


@pytest.mark.parametrize("name", list(HARMLESS))
def test_zip_oddities_that_every_reader_reads_alike_load_what_their_honest_twin_holds(tmp_path, name):
    state = load_weights(HARMLESS[name](tmp_path)).tensors
    if name == "one-key-two-dtypes":  # torch keeps the storage's first dtype: two views of the same 16 bytes
        assert state["a"].tolist() == [1.0, 2.0, 3.0, 4.0] and state["b"].tolist() == [1.0, 2.0]
        assert state["a"].data_ptr() == state["b"].data_ptr()
    else:
        assert list(state) == ["w"] and state["w"].tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize(
    ("size", "stride", "offset", "numel"),
    [
        ((1,), (1,), 0, 1),
        ((4,), (1,), 0, 4),
        ((2, 2), (2, 1), 0, 4),
        ((2, 2), (1, 2), 0, 4),
        ((3,), (1,), 1, 4),
        ((0, 5), (5, 1), 4, 4),
        ((2,), (0,), 0, 4),
    ],
)
def test_honest_views_load(tmp_path, size, stride, offset, numel):
    """The twins of stride-0, view-past-its-storage, 10^12 and 400 MB: honest sizes load as torch builds them."""
    storage = Storage("0", numel)
    raw = build_zip(crafted({"w": tensor(storage, offset, size, stride)}, {"0": FLOATS[: 4 * numel]}))
    state = _loads(tmp_path, raw)
    expected = torch.frombuffer(bytearray(FLOATS[: 4 * numel]), dtype=torch.float32).as_strided(size, stride, offset)
    assert torch.equal(state["w"], expected)


@pytest.mark.slow
def test_a_state_dict_of_20000_tensors_loads(tmp_path):
    """The twin of the pickle floods: a large honest pickle (2 MB, 600k opcodes) stays within the limits."""
    state = collections.OrderedDict((f"layers.{i}.weight", torch.full((2,), float(i))) for i in range(20_000))
    loaded = _loads(tmp_path, saved(state))
    assert len(loaded) == 20_000 and loaded["layers.19999.weight"].tolist() == [19999.0, 19999.0]


def test_two_views_of_one_storage_load_as_one(tmp_path):
    """Tied weights: the honest twin of one-key-two-dtypes and of 100 views."""
    raw = build_zip(crafted({"a": tensor(_S, 0, (4,), (1,)), "b": tensor(_S, 0, (2, 2), (2, 1))}, {"0": FLOATS}))
    state = _loads(tmp_path, raw)
    assert state["a"].data_ptr() == state["b"].data_ptr() and state["b"].tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_legacy_streams_are_refused_even_when_honest(tmp_path):
    """A pre-1.6 stream declares its storages' sizes in its pickle: refused, with the way to convert it."""
    (tmp_path / "old.pth").write_bytes(saved({"w": torch.arange(4.0)}, _use_new_zipfile_serialization=False))
    with pytest.raises(UnsafeFileError, match=r"legacy .* save it again; nothing was run"):
        load_weights(tmp_path / "old.pth")


def test_safetensors_with_a_large_honest_header_loads(tmp_path):
    """torchwork's checkpoints keep their history in the header: a 2 MB header is well within the limit."""
    raw = save_weights_bytes({"w": torch.ones(3)}, metadata={"history": "x" * 2_000_000})
    assert struct.unpack("<Q", raw[:8])[0] > 2_000_000
    (tmp_path / "c.safetensors").write_bytes(raw)
    weights = load_weights(tmp_path / "c.safetensors")
    assert weights.tensors["w"].tolist() == [1.0, 1.0, 1.0] and len(weights.metadata["history"]) == 2_000_000


def test_the_tutorial_fixtures_still_load_and_inspect():
    d1 = describe_weights(TUTORIAL_FIXTURES / "01_pytorch_workflow_model_1.pth")
    assert d1["saved_from"] == "cuda:0" and d1["tensors"][0]["values"] == [[pytest.approx(0.6968, abs=1e-4)]]


# ------------------------------------------------- bounded summaries
def test_summaries_copy_a_block_at_a_time_not_the_tensor(monkeypatch):
    """A non-contiguous 4M-element view: the summary matches torch's and never copies it whole."""
    view = torch.randn(2048, 2048).t()
    flat = view.reshape(-1).double()
    copied: list[int] = []
    real = torch.Tensor.double

    def watch(self):
        copied.append(self.numel())
        return real(self)

    monkeypatch.setattr(torch.Tensor, "double", watch)
    summary = tensor_summary("v", view)
    monkeypatch.undo()
    assert summary["values"] == view.reshape(-1)[:6].tolist()
    assert summary["min"] == flat.min().item() and summary["max"] == flat.max().item()
    assert summary["mean"] == pytest.approx(flat.mean().item(), abs=1e-12)
    assert copied and max(copied) <= 1 << 20 < view.numel()


def test_summaries_keep_nan():
    t = torch.zeros(3_000_000)
    t[2_999_999] = float("nan")
    summary = tensor_summary("t", t)
    assert all(summary[k] != summary[k] for k in ("min", "mean", "max"))


# ------------------------------------------------ in a new process, limited
PROBE = (
    "import runpy, sys\nsys.argv = ['torchwork', *sys.argv[1:]]\ntry:\n"
    "    runpy.run_module('torchwork', run_name='__main__', alter_sys=True)\nfinally:\n"
    "    peak = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmPeak')]\n"
    "    sys.stderr.write(f'VmPeak {peak[0]}\\n')\n"
)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss: int  # bytes


def run_limited(args: list[str], cwd: Path, limit: int | None = None, timeout: float = 60) -> Ran:
    """Run ``args`` under an address-space limit; the child's own peak RSS comes from wait4."""

    def limit_memory() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start = time.perf_counter()
    with subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          preexec_fn=limit_memory) as proc:  # fmt: skip
        outputs: dict[str, bytes] = {}
        pipes = {"out": proc.stdout, "err": proc.stderr}
        readers = [threading.Thread(target=lambda k=k: outputs.__setitem__(k, pipes[k].read())) for k in pipes]
        for reader in readers:
            reader.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        for reader in readers:
            reader.join()
    return Ran(proc.returncode, outputs["out"].decode(), outputs["err"].decode(), seconds, usage.ru_maxrss * 1024)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Ran:
    """``torchwork inspect`` of the tutorial's GPU-saved file, unlimited: what torch itself needs."""
    cwd = tmp_path_factory.mktemp("baseline")
    ran = run_limited(
        [sys.executable, "-c", PROBE, "inspect", str(TUTORIAL_FIXTURES / "01_pytorch_workflow_model_1.pth")], cwd
    )
    assert ran.returncode == 0, ran.stderr
    assert "saved from: cuda:0" in ran.stdout
    return ran


def _vm_peak(ran: Ran) -> int:
    return int(ran.stderr.split("VmPeak")[-1].split()[0]) * 1024


@pytest.fixture(scope="module")
def limit(baseline) -> int:
    return _vm_peak(baseline) + GIB


@pytest.mark.slow
def test_the_memory_limit_lets_honest_files_through_and_stops_a_2_GiB_allocation(tmp_path, limit):
    ok = run_limited(
        [sys.executable, "-m", "torchwork", "inspect", str(TUTORIAL_FIXTURES / "01_pytorch_workflow_model_1.pth")],
        tmp_path,
        limit,
    )
    assert ok.returncode == 0 and "saved from: cuda:0" in ok.stdout, ok.stderr
    code = "import torch, torchwork.report.inspect; b = bytearray(2 << 30)"
    big = run_limited([sys.executable, "-c", code], tmp_path, limit)
    assert big.returncode != 0 and "MemoryError" in big.stderr


@pytest.mark.parametrize("name", CLI_ATTACKS)
@pytest.mark.slow
def test_inspect_refuses_each_attack_in_one_line_within_a_memory_limit(tmp_path, name, baseline, limit):
    make, _error, fragment = ATTACKS[name]
    path = make(tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    ran = run_limited([sys.executable, "-m", "torchwork", "inspect", str(path)], work, limit, timeout=60)
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert ran.returncode == 2, (ran.returncode, ran.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("torchwork: error: "), ran.stderr[-2000:]
    assert "Traceback" not in ran.stderr and fragment in lines[0], lines
    assert ran.seconds < max(45.0, 3 * baseline.seconds), f"{name}: {ran.seconds:.1f} s"  # a hang guard
    assert ran.max_rss < baseline.max_rss + 256 * (1 << 20), f"{name}: {ran.max_rss >> 20} MiB"
    assert not list(work.iterdir())  # nothing written where it ran


@pytest.mark.slow
def test_inspect_of_a_large_honest_file_stays_within_twice_and_a_half_its_size(tmp_path, baseline, limit):
    """128 MB of float32 seen through a transpose: the summary works block by block; the file's bytes and the
    tensors torch builds from them are all the memory it takes."""
    path = tmp_path / "big.pth"
    torch.save({"w": torch.ones(4096, 8192).t()}, path)
    ran = run_limited([sys.executable, "-m", "torchwork", "inspect", str(path)], tmp_path, limit, timeout=120)
    assert ran.returncode == 0 and "(min 1, mean 1, max 1)" in ran.stdout, ran.stderr[-2000:]
    grown = ran.max_rss - baseline.max_rss
    assert grown < 2.5 * path.stat().st_size, f"{grown >> 20} MiB for a {path.stat().st_size >> 20} MiB file"
