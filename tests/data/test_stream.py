"""Streaming a table in chunks: the split by row hash, the sample, exact moments, and the batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from torchwork.core.errors import InputError
from torchwork.data.stream import Moments, Reservoir, Source, StreamBatches, parts_of, sample_keys


def write_parquet(path, frame: pd.DataFrame, row_group: int) -> None:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group)


def numbered(n: int) -> pd.DataFrame:
    return pd.DataFrame({"i": np.arange(n, dtype=np.int64), "x": np.arange(n) * 0.5, "y": np.arange(n) % 7})


def test_the_split_is_a_function_of_the_row_number_alone():
    rows = np.arange(100_000)
    parts = parts_of(rows, seed=3, val=0.15, test=0.15)
    assert parts.dtype == np.int8 and set(np.unique(parts)) == {0, 1, 2}
    share = np.bincount(parts) / len(rows)
    np.testing.assert_allclose(share, [0.70, 0.15, 0.15], atol=0.01)
    # any chunking, any order: the same part for the same row
    chunks = [rows[lo : lo + 777] for lo in range(0, len(rows), 777)][::-1]
    again = {int(r): int(p) for c in chunks for r, p in zip(c, parts_of(c, 3, 0.15, 0.15), strict=True)}
    assert all(again[int(r)] == int(p) for r, p in zip(rows, parts, strict=True))
    assert not np.array_equal(parts, parts_of(rows, seed=4, val=0.15, test=0.15))  # the seed changes it


def test_the_sample_is_the_rows_with_the_smallest_keys_whatever_the_chunking():
    frame = numbered(5000)
    keys = sample_keys(frame["i"].to_numpy(), seed=1)
    expected = set(frame["i"].to_numpy()[np.argsort(keys)[:300]])
    for size in (1, 97, 5000):
        reservoir = Reservoir(300)
        for lo in range(0, 5000, size):
            reservoir.add(frame.iloc[lo : lo + size], keys[lo : lo + size])
        sample = reservoir.frame()
        assert len(sample) == 300 and set(sample["i"]) == expected


def test_moments_merged_chunk_by_chunk_are_exact():
    rng = np.random.default_rng(0)
    values = rng.normal(1e6, 3.0, size=(10_001, 3))  # far from zero: the naive sum of squares loses digits
    values[rng.choice(10_001, 50), 1] = np.nan
    m = Moments(3)
    for lo in range(0, len(values), 1234):
        m.add(values[lo : lo + 1234])
    for j in range(3):
        present = values[:, j][~np.isnan(values[:, j])]
        assert m.n[j] == len(present)
        assert m.mean[j] == pytest.approx(present.mean(), rel=1e-12)
        assert m.m2[j] / m.n[j] == pytest.approx(present.var(), rel=1e-9)
    filled = np.where(np.isnan(values[:, 1]), 7.0, values[:, 1])
    mean, std = m.with_fill(1, 7.0, int(np.isnan(values[:, 1]).sum()))
    assert mean == pytest.approx(filled.mean(), rel=1e-12) and std == pytest.approx(filled.std(), rel=1e-9)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "t.parquet"
    write_parquet(path, numbered(1003), row_group=100)
    return Source(path)


def batches_of(source, shuffle=True, seed=0, batch=16, buffer=64):
    def encode(frame, unit):
        return frame[["i"]].to_numpy(np.float32), frame[["y"]].to_numpy(np.float32)

    return StreamBatches(source, source.units, source.rows, encode, batch, shuffle, seed, buffer_rows=buffer)


def test_an_epoch_holds_every_row_once_in_batches_of_the_promised_sizes(source):
    assert len(source.units) == 11 and source.rows == 1003
    b = batches_of(source)
    for epoch in (0, 1):
        got = list(b.epoch(epoch))
        assert [len(x) for x, _ in got] == b.batch_sizes()
        rows = torch.cat([x for x, _ in got]).squeeze(1).long()
        assert sorted(rows.tolist()) == list(range(1003))
        ys = torch.cat([y for _, y in got]).squeeze(1).long()
        assert torch.equal(ys, rows % 7)  # each row's target travels with it


def test_the_order_is_seeded_mixes_chunks_and_changes_every_epoch(source):
    b = batches_of(source)
    first = torch.cat([x for x, _ in b.epoch(0)]).squeeze(1)
    assert torch.equal(first, torch.cat([x for x, _ in batches_of(source).epoch(0)]).squeeze(1))
    assert not torch.equal(first, torch.cat([x for x, _ in b.epoch(1)]).squeeze(1))
    assert not torch.equal(first, torch.cat([x for x, _ in batches_of(source, seed=1).epoch(0)]).squeeze(1))
    head = first[:16]  # the first batch comes from more than one row group
    assert len(set((head // 100).long().tolist())) > 1


def test_starting_at_batch_k_gives_the_rest_of_the_epoch(source):
    b = batches_of(source)
    whole = list(b.epoch(3))
    rest = list(b.epoch(3, start=20))
    assert len(rest) == len(whole) - 20
    assert all(torch.equal(a[0], c[0]) for a, c in zip(whole[20:], rest, strict=True))


def test_unshuffled_batches_are_the_rows_in_order(source):
    rows = torch.cat([x for x, _ in batches_of(source, shuffle=False).epoch(0)]).squeeze(1)
    assert torch.equal(rows, torch.arange(1003, dtype=torch.float32))


def shares_of(source, processes, shuffle=True, batch=16, read=None):
    """Each rank's StreamBatches of ``processes``; ``read`` (a list) records (rank, unit index) per read."""

    def encode(frame, unit):
        return frame[["i"]].to_numpy(np.float32), frame[["y"]].to_numpy(np.float32)

    out = []
    for rank in range(processes):
        s = Source(source.name)
        if read is not None:
            fetch = s.fetch
            s.fetch = lambda unit, columns=None, rank=rank, fetch=fetch: (read.append((rank, unit.index)),
                                                                            fetch(unit, columns))[1]  # fmt: skip
        out.append(StreamBatches(s, s.units, s.rows, encode, batch, shuffle, 0, buffer_rows=64,
                                 share=(rank, processes), unit_rows=[u.rows for u in s.units]))  # fmt: skip
    return out


@pytest.mark.parametrize("shuffle", [True, False])
def test_in_a_process_group_each_rank_reads_its_own_units_and_takes_as_many_full_batches(source, shuffle):
    """11 row groups of 100 rows (the last 3) for 3 ranks: rank 2 may get the 3-row group among its 3, so every
    rank takes 12 full batches of 16 (3 x 100 rows hold 18; 2 x 100 + 3 hold 12), 3 x 12 x 16 = 576 rows."""
    read: list[tuple[int, int]] = []
    ranks = shares_of(source, 3, shuffle, read=read)
    assert {b.n_batches for b in ranks} == {12} and ranks[0].batch_sizes() == [48] * 12
    for epoch in (0, 1):
        read.clear()
        rows = []
        for b in ranks:
            got = list(b.epoch(epoch))
            assert [len(x) for x, _ in got] == [16] * 12
            rows.append(torch.cat([x for x, _ in got]).squeeze(1).long())
        units = {r: sorted(u for rank, u in read if rank == r) for r in range(3)}
        assert sorted(u for r in units for u in units[r]) == list(range(11))  # every unit once, by one rank
        for r, seen in enumerate(rows):  # a rank's rows come from the units it read, each row at most once
            assert len(set(seen.tolist())) == len(seen) and set((seen // 100).tolist()) <= set(units[r])
        if epoch == 0:
            first = units
    assert not shuffle or units != first  # the units change hands every epoch when shuffled


def test_a_group_with_fewer_units_or_rows_than_it_needs_is_refused(source):
    with pytest.raises(InputError, match=r"11 row group\(s\) for 12 processes: each process needs at least one"):
        shares_of(source, 12)
    with pytest.raises(InputError, match=r"with 2 processes, the one with the fewest rows may get 403, less than a"):
        shares_of(source, 2, batch=500)


def test_a_folder_of_parquet_files_is_one_table_in_name_order(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    frame = numbered(250)
    write_parquet(folder / "b.parquet", frame.iloc[100:], row_group=60)
    write_parquet(folder / "a.parquet", frame.iloc[:100], row_group=60)
    source = Source(folder)
    assert source.rows == 250 and [u.first for u in source.units] == [0, 60, 100, 160, 220]
    read = pd.concat([source.read(u) for u in source.units], ignore_index=True)
    pd.testing.assert_frame_equal(read, frame)
    write_parquet(folder / "c.parquet", frame[["i", "x"]], row_group=60)
    with pytest.raises(InputError, match=r"c\.parquet: its columns differ"):
        Source(folder)


def test_a_npy_file_streams_through_a_memory_map(tmp_path):
    array = np.arange(30_000, dtype=np.float64).reshape(10_000, 3)
    np.save(tmp_path / "a.npy", array)
    source = Source(tmp_path / "a.npy")
    assert source.columns == ["0", "1", "2"] and source.rows == 10_000
    read = np.vstack([source.read(u).to_numpy() for u in source.units])
    np.testing.assert_array_equal(read, array)


def test_a_csv_is_refused_with_the_conversion(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"torchwork convert .*t\.csv .*t\.parquet"):
        Source(tmp_path / "t.csv")


def test_an_empty_row_group_is_no_chunk_and_a_streamed_run_finishes(tmp_path):
    """Issue 18 item 3: the 4th of 6 row groups empty crashed the final evaluation (and resume repeated it)."""
    from tests.support import cli

    rng = np.random.default_rng(0)
    path = tmp_path / "e.parquet"
    writer = None
    for i in range(6):
        a = rng.normal(size=0 if i == 3 else 300)
        table = pa.table({"a": a, "y": 2 * a + 1})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    sizes = [pq.ParquetFile(path).metadata.row_group(i).num_rows for i in range(6)]
    assert sizes == [300, 300, 300, 0, 300, 300]
    source = Source(path)
    assert [u.index for u in source.units] == [0, 1, 2, 4, 5] and source.rows == 1500
    assert [u.first for u in source.units] == [0, 300, 600, 900, 1200]
    result = cli("train", str(path), "--stream", "--target", "y", "--epochs", "2", "-q", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r" / "manifest.json").is_file()


@pytest.mark.parametrize("text_file", [0, 1])
def test_a_folder_where_one_file_stores_a_float_column_as_strings_streams(tmp_path, text_file):
    """Issue 18 item 1: numbers written as text in one file of a folder are numbers, first file or not."""
    import torchwork

    rng = np.random.default_rng(0)
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(3):
        a = rng.normal(size=300)
        part = pd.DataFrame({"a": a, "s": 3 * a, "y": 2 * a + 1})
        if i == text_file:
            part["s"] = part["s"].astype(str)
        part.to_parquet(folder / f"p{i}.parquet")
    run = torchwork.train(str(folder), target="y", epochs=2, verbose=False)
    s = next(c for c in run.pre.columns if c.name == "s")
    assert s.kind == "numeric" and "numbers stored as text" in s.reason


def test_a_file_that_changes_or_is_truncated_while_it_streams_is_named_in_one_error(tmp_path):
    """Issue 18 items 7 and 13: each chunk is read only from the file as it was when the source opened."""
    import os

    from torchwork.core.errors import DataChanged

    path = tmp_path / "t.parquet"
    write_parquet(path, numbered(1000), row_group=100)
    source = Source(path)
    assert len(source.read(source.units[0])) == 100
    source.check_unchanged()
    stamp = path.stat().st_mtime_ns
    frame = numbered(1000)
    frame["x"] *= 2  # the same schema and rows, other values
    write_parquet(path, frame, row_group=100)
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # a modification time that surely differs
    for read in (lambda: source.read(source.units[3]), source.check_unchanged):
        with pytest.raises(DataChanged, match=r"t\.parquet: changed while the run was reading it"):
            read()
    source = Source(path)
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(DataChanged, match=r"t\.parquet: changed while the run was reading it \(is \d+ bytes, was"):
        source.read(source.units[9])
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        write_parquet(folder / f"{i}.parquet", numbered(100), row_group=50)
    source = Source(folder)
    write_parquet(folder / "2.parquet", numbered(100), row_group=50)
    with pytest.raises(DataChanged, match=r"parts: its Parquet files changed while the run read them \(added 2"):
        source.check_unchanged()
