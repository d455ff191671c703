"""PyTorch files checked, then loaded: the ``torch.save`` zip (from a canonical rebuild of the checked
entries) and the legacy stream, each given to ``torch.load(weights_only=True)`` only after every check."""

from __future__ import annotations

import io
import pickle
import re
import struct
import warnings
import zipfile
from typing import IO, Any

import torch

from torchwork.core.errors import InputError, UnsafeFileError
from torchwork.files.inert import (
    MAX_OPCODES,
    MAX_PICKLE_BYTES,
    PICKLE_VALUE_BUDGET,
    InertDict,
    InertStorage,
    refuse_file,
    shown,
)
from torchwork.files.torchzip import parse_torch_zip
from torchwork.files.unpickler import InertUnpickler, check_totals, state_dict_check

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_SMALL_RECORD = re.compile(rb"[0-9]{1,40}\n?")
_META_RECORDS = {"version", ".data/version", ".format_version", ".storage_alignment", ".data/serialization_id"}


# ------------------------------------------------------------ torch.save zips
def load_torch_zip(held: list[bytes], source: str) -> tuple[Any, list[str]]:
    """Check a torch.save zip, then load it from a canonical rebuild; ``held`` (the file's bytes) is emptied
    before torch.load, so the file is in memory twice at most, never three times."""
    raw = held[0]
    prefix, entries = parse_torch_zip(raw, source)
    by_suffix = {e.name[len(prefix) + 1 :]: e for e in entries}
    pickle_entry = by_suffix.get("data.pkl")
    if pickle_entry is None:
        raise InputError(f"{source}: a zip file, but not one written by torch.save (no data.pkl)")
    for suffix, entry in by_suffix.items():
        if suffix == "data.pkl" or (suffix.startswith("data/") and len(suffix) > 5):
            continue
        if suffix not in _META_RECORDS and suffix != "byteorder":
            refuse_file(source, f"entry {shown(entry.name)} is not part of a torch.save file")
        value = raw[entry.start : entry.start + min(entry.size, 64)]
        ok = value in (b"little", b"big") if suffix == "byteorder" else bool(_SMALL_RECORD.fullmatch(value))
        if not ok or entry.size > 64:
            refuse_file(source, f"entry {shown(entry.name)} holds an odd value")
    if "version" not in by_suffix and ".data/version" not in by_suffix:
        raise InputError(f"{source}: damaged PyTorch file (no version record)")
    if pickle_entry.size > MAX_PICKLE_BYTES:
        refuse_file(source, f"its data.pkl holds {pickle_entry.size} bytes, over the limit of {MAX_PICKLE_BYTES}")

    storages: dict[str, InertStorage] = {}
    unpickler = InertUnpickler(source, [PICKLE_VALUE_BUDGET, MAX_OPCODES])

    def storage(pid: Any) -> InertStorage:
        if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
            unpickler.refuse(f"a persistent id is {shown(pid)}, not ('storage', type, key, device, size)")
        return unpickler.storage(storages, *pid[1:])

    unpickler.persistent = storage
    pickled = raw[pickle_entry.start : pickle_entry.start + pickle_entry.size]
    stream = io.BytesIO(pickled)
    state_dict_check(unpickler.run(stream), source)
    if stream.tell() != len(pickled):
        refuse_file(source, "its data.pkl holds bytes after the pickle's end")
    for key, s in storages.items():
        record = by_suffix.get(f"data/{key}")
        if record is None:
            refuse_file(source, f"storage 'data/{key}' is declared but the archive holds no such entry")
        if record.size != s.numel * s.itemsize:
            refuse_file(source, f"storage 'data/{key}' declares {s.numel * s.itemsize} bytes but the archive holds "
                            f"{record.size}")  # fmt: skip
    unused = [s for s in by_suffix if s.startswith("data/") and s[5:] not in storages]
    if unused:
        refuse_file(source, f"entry '{shown(unused[0])}' is a storage that no tensor uses")
    check_totals(unpickler, storages, len(raw), source)

    # What torch reads: an archive written by torch's own writer from exactly the entries checked above.
    out = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(out, True, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frombuffer warns that bytes are read-only: the writer only reads them
        for entry in entries:
            name = entry.name[len(prefix) + 1 :]
            if entry.size:  # a view of the bytes read, not a copy of them
                view = torch.frombuffer(raw, dtype=torch.uint8, offset=entry.start, count=entry.size)
                writer.write_record(name, view.data_ptr(), entry.size)  # the address of those bytes
                del view
            else:
                writer.write_record(name, b"", 0)
    writer.write_end_of_file()
    del raw, pickled
    held.clear()  # the caller holds only ``held``: the file's bytes are freed here
    out.seek(0)
    return _torch_load(out, source)


# ----------------------------------------------------------- legacy streams
def load_legacy(raw: bytes, source: str) -> tuple[Any, list[str]]:
    """The pre-zip ``torch.save`` stream: five pickles (magic, protocol, system info, the object, the
    storage keys), then each storage as an 8-byte element count and its bytes, to the end of the file."""
    stream = io.BytesIO(raw)
    budget = [PICKLE_VALUE_BUDGET, MAX_OPCODES]
    magic = InertUnpickler(source, budget).run(stream)
    if magic != _LEGACY_MAGIC:
        raise InputError(f"{source}: a pickle, but not a PyTorch file (no torch.save magic number)")
    if InertUnpickler(source, budget).run(stream) != _LEGACY_PROTOCOL:
        raise InputError(f"{source}: a PyTorch file of an unknown legacy protocol")
    if not isinstance(InertUnpickler(source, budget).run(stream), InertDict):
        raise InputError(f"{source}: damaged PyTorch file (its system information is not a mapping)")

    storages: dict[str, InertStorage] = {}
    unpickler = InertUnpickler(source, budget)

    def storage(pid: Any) -> InertStorage:
        if type(pid) is not tuple or len(pid) != 6 or pid[0] != "storage":
            unpickler.refuse(f"a persistent id is {shown(pid)}, not ('storage', type, key, device, size, view)")
        if pid[5] is not None:
            unpickler.refuse("a storage is a view of another (a pre-1.0 file), which torchwork does not load")
        return unpickler.storage(storages, *pid[1:5])

    unpickler.persistent = storage
    state_dict_check(unpickler.run(stream), source)
    keys = InertUnpickler(source, budget).run(stream)
    if type(keys) is not list or not all(isinstance(k, str) for k in keys):
        refuse_file(source, "its list of storage keys is not a list of names")
    if len(set(keys)) != len(keys) or set(keys) != set(storages):
        refuse_file(source, "its list of storage keys does not match the storages its pickle declares")
    pos = stream.tell()
    for key in keys:
        s = storages[key]
        if pos + 8 > len(raw):
            refuse_file(source, f"storage '{key}' has no record: the file ends first")
        (count,) = struct.unpack_from("<q", raw, pos)
        nbytes = s.numel * s.itemsize
        if count != s.numel:
            refuse_file(source, f"storage '{key}' declares {s.numel} elements but its record says {count}")
        if nbytes > len(raw) - pos - 8:
            refuse_file(
                source, f"storage '{key}' declares {nbytes} bytes but only {len(raw) - pos - 8} remain in the file"
            )
        pos += 8 + nbytes
    if pos != len(raw):
        refuse_file(source, f"it holds {len(raw) - pos} bytes after its last storage")
    check_totals(unpickler, storages, len(raw), source)
    return _torch_load(io.BytesIO(raw), source)


# ------------------------------------------------------------------- loading
def _torch_load(stream: IO[bytes], source: str) -> tuple[Any, list[str]]:
    """``torch.load(weights_only=True)`` of bytes already checked, every storage kept on the CPU."""
    locations: list[str] = []

    def on_cpu(storage: Any, location: str) -> Any:
        locations.append(location)
        return storage  # keep every storage on the CPU: a GPU file loads on any machine

    try:
        obj = torch.load(stream, map_location=on_cpu, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise UnsafeFileError(f"{source}: refused by torch.load(weights_only=True): {first}; nothing was run") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, struct.error, TypeError, KeyError, AttributeError,
            IndexError, OverflowError) as exc:  # fmt: skip  # checked above; here in case torch disagrees anyway
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{source}: damaged or not a PyTorch file ({first})") from None
    return obj, sorted(set(locations))
