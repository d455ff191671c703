"""Reading files from the real world: encodings, delimiters, decimal commas, hostile files, memory.

Every refusal is one line (an :class:`InputError`) that names the file and the rule, and comes
fast: nothing is read that the checks can refuse first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import numpy as np
import pandas as pd
import pytest

import torchwork.core.runtime as runtime
import torchwork.data.csv as csv_text
from tests.support import ENV, run_cli
from torchwork.core.errors import InputError
from torchwork.data.readers import read_table


def refused(data, *fragments, seconds=30.0, **options) -> str:
    """``read_table`` refuses ``data`` with one line holding every fragment, within ``seconds`` (a guard against
    reading a huge declared size before refusing, not a speed test: refusals take well under 0.1 s idle)."""
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        read_table(data, **options)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert elapsed < seconds, (elapsed, message)
    return message


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode())
    else:
        path.write_bytes(content)
    return path


# ---------------------------------------------------------------- encodings
def test_latin1_reads_with_its_encoding_and_names_the_line_without_it(tmp_path):
    path = write(tmp_path, "cities.csv", "city,y\nOslo,1\nMünchen,2\nSão Paulo,3\n".encode("latin-1"))
    table = read_table(path, encoding="latin-1")
    assert list(table.frame["city"]) == ["Oslo", "München", "São Paulo"]
    assert table.options == {"encoding": "latin-1", "delimiter": ",", "decimal": "."}
    refused(path, "cities.csv", "line 3", "0xFC", "not valid UTF-8", "--encoding", "latin-1")


def test_cp1252_byte_undefined_there_names_its_line(tmp_path):
    path = write(tmp_path, "w.csv", b"a,y\nx,1\n\x80,2\n\x81,3\n")  # 0x80 is the euro sign, 0x81 is undefined
    refused(path, "w.csv", "line 4", "0x81", "not valid cp1252", encoding="cp1252")
    assert list(read_table(path, encoding="latin-1").frame["a"]) == ["x", "\x80", "\x81"]


def test_utf8_with_and_without_a_byte_order_mark(tmp_path):
    for name, bom in (("plain.csv", b""), ("bom.csv", b"\xef\xbb\xbf")):
        table = read_table(write(tmp_path, name, bom + "größe,y\n1,2\n".encode()))
        assert list(table.frame.columns) == ["größe", "y"]


def test_utf16_is_recognised_and_reads_with_its_encoding(tmp_path):
    path = write(tmp_path, "u16.csv", "a,y\n1,2\n".encode("utf-16"))
    refused(path, "u16.csv", "UTF-16 byte-order mark", "--encoding utf-16")
    assert read_table(path, encoding="utf-16").frame.to_dict("list") == {"a": [1], "y": [2]}


def test_a_bad_byte_straddling_the_read_chunks_names_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_text, "_CHUNK", 5)  # every line crosses a chunk
    path = write(tmp_path, "long.csv", ("a,y\n" + "é,1\n" * 20).encode() + b"x,\xff\n")
    refused(path, "line 22", "0xFF")
    assert len(read_table(path, encoding="latin-1").frame) == 21


def test_a_nul_byte_is_a_binary_file(tmp_path):
    refused(write(tmp_path, "nul.csv", b"a,y\n1,2\n3,\x004\n"), "nul.csv", "line 3", "NUL byte", "binary")


def test_bad_option_values(tmp_path):
    path = write(tmp_path, "ok.csv", "a,y\n1,2\n")
    refused(path, "--encoding 'klingon'", "unknown encoding", encoding="klingon")
    refused(path, "--encoding 'base64'", "not a text encoding", encoding="base64")
    refused(path, "--delimiter", "one character", delimiter=";;")
    refused(path, "--decimal ';'", "expected '.' or ','", decimal=";")
    refused(path, "cannot be the same", delimiter=",", decimal=",")


def test_csv_options_are_ignored_for_other_inputs_but_checked(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 2)))
    assert read_table(tmp_path / "a.npy", delimiter=";").frame.shape == (3, 2)
    assert read_table(np.ones((3, 2)), encoding="latin-1", decimal=",").frame.shape == (3, 2)
    refused(np.ones((3, 2)), "--decimal 'x'", decimal="x")


BINARY_AS_CSV = {
    "random bytes": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    # a ragged row holding bytes that are not UTF-8: pyarrow used to print a traceback for it on stderr
    "ragged row of bytes": b"a,y\n1,2\n\xff\xfe,\xc3,3,4\n",
}


@pytest.mark.parametrize("content", BINARY_AS_CSV.values(), ids=BINARY_AS_CSV.keys())
@pytest.mark.slow
def test_binary_as_csv_in_a_new_process_prints_one_line_and_nothing_else(tmp_path, content):
    path = write(tmp_path, "junk.csv", content)
    result = run_cli("train", str(path), "--target", "y", cwd=tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("torchwork: error: ") and "junk.csv" in lines[0], lines[0]


# ------------------------------------------------------- delimiters, decimals
def test_semicolons_and_decimal_commas(tmp_path):
    path = write(tmp_path, "eu.csv", "breite;länge;y\n1,5;-2,25;3\n4;5,5;1234,125\n")
    table = read_table(path, decimal=",")
    assert table.frame.to_dict("list") == {"breite": [1.5, 4.0], "länge": [-2.25, 5.5], "y": [3.0, 1234.125]}
    assert table.options == {"encoding": "utf-8", "delimiter": ";", "decimal": ","}
    plain = read_table(path)  # the decimal mark is not guessed: the column check can hint --decimal ,
    assert plain.options == {"encoding": "utf-8", "delimiter": ";", "decimal": "."}
    assert list(plain.frame["breite"]) == ["1,5", "4"]


@pytest.mark.parametrize(
    ("delimiter", "suffix"), [(";", ".csv"), ("\t", ".csv"), ("|", ".csv"), ("\t", ".txt"), (",", ".csv")]
)
def test_the_delimiter_is_detected(tmp_path, delimiter, suffix):
    # the decoys: a quoted field holding other delimiters, and commas in values where ',' is not the delimiter
    other = "," if delimiter != "," else ";"
    rows = [["id", '"a,b;c|d"', "y"], ["1", f"2{other}5", "3"], ["4", "5", f'"6{delimiter}7"'], ["8", "9", "10"]]
    path = write(tmp_path, "data" + suffix, "\n".join(delimiter.join(r) for r in rows) + "\n")
    table = read_table(path)
    assert list(table.frame.columns) == ["id", "a,b;c|d", "y"]
    assert table.options["delimiter"] == delimiter
    assert len(table.frame) == 3


def test_with_a_decimal_comma_the_delimiter_is_not_a_comma(tmp_path):
    path = write(tmp_path, "eu.csv", "a,b;y\n1,5;2\n")  # ',' and ';' both fit; ',' would win on a tie
    assert read_table(path).options["delimiter"] == ","
    assert read_table(path, decimal=",").frame.to_dict("list") == {"a,b": [1.5], "y": [2]}


def test_a_record_longer_than_pyarrows_block_reads(tmp_path):
    path = write(tmp_path, "long.csv", "text,y\n" + "x" * 3_000_000 + ",1\nshort,2\n")
    table = read_table(path)
    assert table.frame["y"].tolist() == [1, 2] and len(table.frame["text"][0]) == 3_000_000


def test_tsv_means_tab_and_a_given_delimiter_wins(tmp_path):
    path = write(tmp_path, "data.tsv", "a,b\ty\n1,2\t3\n")
    assert list(read_table(path).frame.columns) == ["a,b", "y"]
    assert list(read_table(path, delimiter=",").frame.columns) == ["a", "b\ty"]
    assert read_table(path, delimiter="tab").options["delimiter"] == "\t"


def test_a_ragged_row_in_a_detected_format_names_the_line_and_the_delimiter(tmp_path):
    path = write(tmp_path, "r.csv", "a;b;y\n1;2;3\n4;5\n")
    refused(path, "r.csv", "line 3 has 2 fields but the header has 3", "';' was detected", "--delimiter")


# ------------------------------------------------------------ hostile files
def npy_header(shape, descr="<f8", size=368) -> bytes:
    """A version 1.0 .npy header of ``size`` bytes declaring ``shape``, and no data."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (size - 10 - len(text) - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin-1")


def test_npy_declaring_two_tebibytes_is_refused_without_reading(tmp_path):
    path = write(tmp_path, "huge.npy", npy_header((2**37, 2)))  # 2**38 float64: 2 TiB
    assert path.stat().st_size == 368
    refused(path, "huge.npy", "declares shape (137438953472, 2) of float64 (2.0 TiB)", "truncated")


def test_npy_with_bytes_after_its_data_is_refused(tmp_path):
    path = tmp_path / "tail.npy"
    np.save(path, np.ones((2, 2)))
    path.write_bytes(path.read_bytes() + b"extra")
    refused(path, "tail.npy", "bytes after its data")


def test_npy_without_a_header_is_refused(tmp_path):
    refused(write(tmp_path, "fake.npy", b"just,text\n1,2\n"), "fake.npy", "no valid .npy header")


def test_npz_member_without_a_header_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", b"0.5,1.5\n2.5,3.5\n")  # a member, but text
    refused(path, "bad.npz", "member 'X.npy'", "no valid .npy header")


def test_npz_member_declaring_more_than_the_archive_holds_is_refused(tmp_path):
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", npy_header((2**30, 1024)) + b"\x00" * 800)
    refused(path, "lying.npz", "member 'X.npy'", "declares shape (1073741824, 1024)", "8.0 TiB")


def test_npz_that_is_not_a_zip_is_refused(tmp_path):
    refused(write(tmp_path, "plain.npz", b"not a zip at all"), "plain.npz", "not a readable npz file")


def test_pickled_objects_are_refused_in_npy_and_npz(tmp_path):
    objects = np.array([{"a": 1}, None], dtype=object)
    np.save(tmp_path / "o.npy", objects, allow_pickle=True)
    np.savez(tmp_path / "o.npz", X=np.ones((2, 2)), y=objects)
    refused(tmp_path / "o.npy", "o.npy", "refused", "never loads pickles")
    refused(tmp_path / "o.npz", "o.npz", "member 'y.npy'", "refused", "never loads pickles")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_is_refused_before_reading(tmp_path):
    refused("/dev/zero", "/dev/zero", "character device")
    (tmp_path / "zero.csv").symlink_to("/dev/zero")  # the suffix of a data file does not make it one
    refused(tmp_path / "zero.csv", "zero.csv", "character device")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    outcome: dict[str, str] = {}

    def read() -> None:
        try:
            read_table(fifo)
        except InputError as exc:
            outcome["error"] = str(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # opened for reading, it waits for a writer: give it one, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert "pipe.csv" in outcome["error"] and "named pipe (FIFO)" in outcome["error"], outcome


@pytest.mark.skipif(not os.path.exists("/dev/stdin"), reason="no /dev/stdin")
def test_dev_stdin_from_a_pipe_is_refused_without_waiting_for_it():
    script = "from torchwork.data.readers import read_table\nread_table('/dev/stdin')"
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=ENV)  # fmt: skip
    try:  # stdin stays open and empty meanwhile: reading it would wait for ever
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("reading /dev/stdin waited for its input")
    finally:
        process.stdin.close()
    err = process.stderr.read()
    process.stderr.close()
    assert "InputError: /dev/stdin: is a named pipe (FIFO), not a data file" in err, err


def test_a_folder_and_a_missing_file(tmp_path):
    (tmp_path / "folder.csv").mkdir()
    refused(tmp_path / "folder.csv", "folder.csv", "is a folder")
    refused(tmp_path / "nope.csv", "nope.csv", "no such file")


# ------------------------------------------------------------------ memory
def test_a_file_too_big_for_memory_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    pd.DataFrame(np.ones((20_000, 5)), columns=list("abcdy")).to_csv(path, index=False)  # ~200 KB
    monkeypatch.setattr(runtime, "available_memory", lambda: 100_000)
    refused(path, "big.csv", "reading it needs about", "this machine has 98 KiB available", "Parquet")
    np.save(tmp_path / "big.npy", np.ones((20_000, 5)))
    refused(tmp_path / "big.npy", "big.npy", "reading it needs about 1.5 MiB", "fewer rows")
    pd.DataFrame(np.ones((20_000, 5)), columns=list("abcdy")).to_parquet(tmp_path / "big.parquet")  # tiny: RLE
    refused(tmp_path / "big.parquet", "big.parquet", "reading it needs about 1.5 MiB", "fewer rows")
    monkeypatch.setattr(runtime, "available_memory", lambda: 1 << 40)
    assert len(read_table(path).frame) == 20_000


def test_running_out_of_memory_while_reading_is_one_line(tmp_path, monkeypatch):
    import pyarrow.csv

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(pyarrow.csv, "open_csv", exhausted)
    path = write(tmp_path, "a.csv", "a,y\n1,2\n")
    refused(path, "a.csv", "ran out of memory reading it", "Parquet")


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="no /proc/meminfo")
def test_available_memory_is_read():
    available = runtime.available_memory()
    assert available is not None and 0 < available < 1 << 50


# ru_maxrss would not do: on Linux a child keeps its parent's peak (pytest's, with torch) across fork and exec
PEAK = """
import json, sys

from torchwork.data.readers import read_table


def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

read_table(sys.argv[2])  # once, small: imports, Arrow's threads and pools
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak counts from here
except OSError:
    pass  # then it counts the imports' too, which only makes it larger
before = status("VmRSS")
table = read_table(sys.argv[1])
dtypes = sorted({str(t) for t in table.frame.dtypes})
print(json.dumps({"extra": status("VmHWM") - before, "shape": list(table.frame.shape), "dtypes": dtypes}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="measures VmRSS and VmHWM in /proc/self/status")
def test_peak_memory_of_reading_a_numeric_csv(tmp_path):
    """A 40 MB numeric CSV costs at most 2.5x its size at the peak (text, Arrow table, DataFrame)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "numbers.csv"
    pd.DataFrame(rng.normal(size=(210_000, 10)), columns=[f"x{i}" for i in range(9)] + ["y"]).to_csv(path, index=False)
    small = write(tmp_path, "small.csv", "a,y\n1.5,2\n")
    size = path.stat().st_size
    assert 35e6 < size < 45e6
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(PEAK), str(path), str(small)],
                            capture_output=True, text=True, env=ENV, timeout=300)  # fmt: skip
    assert result.returncode == 0 and not result.stderr, result.stderr
    measured = json.loads(result.stdout)
    assert measured["shape"] == [210_000, 10] and measured["dtypes"] == ["float64"]
    assert measured["extra"] <= 2.5 * size, f"peak {measured['extra'] / size:.2f}x the file's {size} bytes"


# ------------------------------------------------------ what keeps working
def test_line_numbers_map_to_rows_only_when_they_do(tmp_path):
    cases = {
        "a,y\n1,2\n3,4\n": True,
        "a,y\n1,2\n3,4": True,  # no final line break
        "a,y\r\n1,2\r\n3,4\r\n": True,
        "a,y\n1,2\n\n3,4\n": False,  # a blank line
        "\na,y\n1,2\n3,4\n": False,
        'a,y\n"1\n",2\n3,4\n': False,  # a quoted line break
        "a,y\r1,2\r3,4\r": False,  # old Mac line ends
        "a,y\r\n1,2\r\n\r\n3,4\r\n": False,
    }
    for i, (text, expected) in enumerate(cases.items()):
        table = read_table(write(tmp_path, f"l{i}.csv", text))
        assert len(table.frame) == 2 and table.first_line == 2
        assert table.lines_match_rows is expected, text


def test_a_crlf_straddling_the_read_chunks_still_maps_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_text, "_CHUNK", 4)
    path = write(tmp_path, "w.csv", "a,y\r\n1,2\r\n3,4\r\n5,6\r\n")
    assert read_table(path).lines_match_rows and read_table(path, encoding="cp1252").lines_match_rows


def test_types_a_later_block_does_not_fit_are_widened_as_pyarrow_infers_them(tmp_path):
    import pyarrow.csv

    n = 120_000  # several of pyarrow's 1 MiB blocks: the types are first inferred from the first one
    lines = ["i,b,s,n,t,y"] + ["1,0,x,,2020-01-01,1"] * n + ["2.5,true,y,,2020-01-02,2", "3,1,z,7,oops,3"]
    path = write(tmp_path, "late.csv", "\n".join(lines) + "\n")
    table = read_table(path)
    expected = pyarrow.csv.read_csv(path, convert_options=pyarrow.csv.ConvertOptions(strings_can_be_null=True))
    pd.testing.assert_frame_equal(table.frame, expected.to_pandas())
    assert table.frame["i"].dtype == "float64" and table.frame["b"].dtype == "bool"


def test_the_columns_can_be_written_to(tmp_path):
    table = read_table(write(tmp_path, "w.csv", "a,y\n1.5,2\n3.5,4\n"))
    table.frame.loc[0, "a"] = 9.0
    table.frame["y"] += 1
    assert table.frame.to_dict("list") == {"a": [9.0, 3.5], "y": [3, 5]}


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("a,b,y\n1,2,3\n4,5,6\n7,8\n1,2,3\n", ("line 4 has 2 fields but the header has 3",)),
        ("a,b,y\n1,2,3\n4,5,6,7\n", ("line 3 has 4 fields but the header has 3",)),
        ("a,b,a\n1,2,3\n", ("duplicated column 'a' in the header",)),
        ("a,,y\n1,2,3\n", ("a column in the header has no name",)),
        ("", ("empty file",)),
        ("\n\n", ("empty file (no header)",)),
    ],
)
def test_csv_problems_name_the_file_and_the_rule(tmp_path, text, fragments):
    refused(write(tmp_path, "p.csv", text), "p.csv", *fragments)


def test_header_only_reads_as_no_rows(tmp_path):
    table = read_table(write(tmp_path, "h.csv", "a,y\n"))
    assert list(table.frame.columns) == ["a", "y"] and len(table.frame) == 0


def test_unknown_file_type(tmp_path):
    refused(write(tmp_path, "d.xlsx", "a,b"), "d.xlsx", "unknown file type '.xlsx'")


def test_parquet(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0], "s": ["x", "y"], "y": [3, 4]})
    frame.to_parquet(tmp_path / "d.parquet")
    table = read_table(tmp_path / "d.parquet")
    pd.testing.assert_frame_equal(table.frame, frame)
    table.frame.loc[0, "a"] = 5.0
    refused(write(tmp_path, "bad.parquet", "a,b\n1,2\n"), "bad.parquet", "not a readable Parquet file")


def test_npy_and_npz_layouts(tmp_path):
    X, y = np.arange(12.0).reshape(4, 3), np.arange(4.0)
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "f.npy", np.asfortranarray(X))
    np.savez(tmp_path / "xy.npz", X=X, y=y)
    np.savez_compressed(tmp_path / "one.npz", data=X)
    np.savez(tmp_path / "cols.npz", a=y, b=2 * y)
    assert read_table(tmp_path / "a.npy").frame.to_numpy().tolist() == X.tolist()
    assert read_table(tmp_path / "f.npy").frame.to_numpy().tolist() == X.tolist()
    assert list(read_table(tmp_path / "xy.npz").frame.columns) == ["x0", "x1", "x2", "y"]
    assert read_table(tmp_path / "one.npz").frame.shape == (4, 3)
    assert read_table(tmp_path / "cols.npz").frame.to_dict("list") == {"a": y.tolist(), "b": (2 * y).tolist()}
    np.savez(tmp_path / "scalar.npz", a=np.float64(1.0), b=np.float64(2.0))
    refused(tmp_path / "scalar.npz", "scalar.npz", "is a single value")


def test_frames_dicts_arrays_and_tensors():
    import torch

    assert list(read_table(pd.DataFrame({1: [1.0], "y": [2.0]})).frame.columns) == ["1", "y"]
    assert read_table({"a": [1, 2], "y": [3, 4]}).frame.shape == (2, 2)
    assert read_table(np.ones((3, 2))).frame.shape == (3, 2)
    assert read_table(torch.ones(3)).frame.shape == (3, 1)
    refused(pd.DataFrame([[1, 2]], columns=["a", "a"]), "data: duplicated column 'a'")
    refused(np.array([{}, None], dtype=object), "holds Python objects")
