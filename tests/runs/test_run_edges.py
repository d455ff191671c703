"""Runs on the edges a user hits (issue 18): text that matplotlib would parse, a plot that fails,
evaluating on the rows a run was trained on, a forged class list, the words of a run's summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support import cli

MATH = [r"$\frac{1}{$", "$x^$", r"$\alpha$"]  # a parse error, another, and text that would draw as α


@pytest.fixture
def mathtext_csv(tmp_path) -> Path:
    """The issue's reproducer: class labels and a feature name that matplotlib reads as mathtext."""
    a = np.random.default_rng(1).normal(size=240)
    labels = np.array(MATH)[np.digitize(a, [-0.4, 0.4])]
    pd.DataFrame({"a": a, "$x^$": a * 0 + 1, "lab": labels}).to_csv(tmp_path / "m.csv", index=False)
    return tmp_path / "m.csv"


def test_mathtext_in_labels_and_feature_names_is_drawn_as_plain_text(mathtext_csv, tmp_path, monkeypatch):
    """Item 2: the run is written, every plot with it, and each text shows as spelled."""
    from matplotlib.text import Text

    from torchwork.report import plots

    drawn: list[str] = []
    save = plots.png_bytes

    def spy(fig, path):
        data = save(fig, path)  # draws the figure: tick labels are laid out by now
        for t in fig.findobj(Text):
            shown, math = t._preprocess_math(t.get_text())  # what matplotlib puts on the page, and how
            if not math:
                drawn.append(shown)
        return data

    monkeypatch.setattr(plots, "png_bytes", spy)
    out = tmp_path / "r"
    result = cli("train", str(mathtext_csv), "--target", "lab", "--epochs", "2", "-q", "--out", str(out))
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "run.json").read_text())
    assert not [n for n in info["notes"] if "left out" in n], info["notes"]
    assert {p.name for p in (out / "plots").iterdir()} >= {"loss.png", "confusion_matrix.png", "class_balance.png",
                                                          "decision_regions.png"}  # fmt: skip
    for label in [*MATH, "$x^$"]:
        assert label in drawn, (label, sorted(set(drawn))[:40])


def test_a_plot_that_still_fails_is_left_out_with_a_note_and_the_run_is_written(mathtext_csv, tmp_path, monkeypatch):
    from torchwork.report import plots

    def broken(*args, **kwargs):
        raise ValueError("Expected end of text, found '$'")

    monkeypatch.setattr(plots, "plot_class_balance", broken)
    out = tmp_path / "r"
    result = cli("train", str(mathtext_csv), "--target", "lab", "--epochs", "2", "-q", "--out", str(out))
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "run.json").read_text())
    note = next(n for n in info["notes"] if "left out" in n)
    assert "'Classes in each split'" in note and "ValueError" in note, note
    assert not (out / "plots" / "class_balance.png").exists() and (out / "plots" / "loss.png").exists()
    assert (
        "Classes in each split" in (out / "report.html").read_text() and "left out" in (out / "report.html").read_text()
    )


def test_off_a_terminal_every_epoch_has_its_line(tmp_path):
    """Item 29: 220 epochs into a pipe print 220 lines, in order (211 did before)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(64, 2)), columns=["a", "b"]).assign(y=lambda f: f.a - f.b)
    frame.to_csv(tmp_path / "d.csv", index=False)
    result = cli("train", str(tmp_path / "d.csv"), "--target", "y", "--epochs", "220", "--early-stopping", "0",
                 "--hidden", "4", "--out", str(tmp_path / "r"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    epochs = [int(line.split("/")[0].split()[1]) for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert epochs == list(range(1, 221)), (len(epochs), epochs[:5])


@pytest.fixture
def classifier(tmp_path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(120, 2)), columns=["a", "b"])
    frame["y"] = np.where(frame.a > 0, "yes", "no")
    frame.to_csv(tmp_path / "c.csv", index=False)
    out = tmp_path / "run"
    result = cli("train", str(tmp_path / "c.csv"), "--target", "y", "--epochs", "2", "-q", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return tmp_path / "c.csv", out


@pytest.mark.parametrize("classes", [["yes", "yes"], [1, "1"], [True, "True"]])
def test_a_forged_model_json_with_a_repeated_class_is_refused(classifier, classes):
    """Item 18: the manifest recomputed (unsigned), two classes spelled alike: refused in one line, exit 2,
    as the other invalid class lists are (not one probability column for two classes)."""
    from tests.support import assert_one_line_error
    from torchwork.files.integrity import write_manifest

    data, run = classifier
    meta = json.loads((run / "model.json").read_text())
    meta["preprocessing"]["targets"]["classes"] = classes
    (run / "model.json").write_text(json.dumps(meta))
    write_manifest(run)
    for command in ("predict", "evaluate"):
        line = assert_one_line_error(cli(command, str(run), str(data)), "not a torchwork run folder", "repeat")
        assert str(classes[1]) in line, line


def test_evaluate_on_the_training_file_says_these_are_not_test_rows(classifier, tmp_path):
    """Item 27: the run keeps its data's SHA-256 and split: evaluating on that file says so, with the counts."""
    data, run = classifier
    split = json.loads((run / "run.json").read_text())["split"]
    result = cli("evaluate", str(run), str(data))
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1, result.stderr
    assert f"{data} is the data this run was trained on" in notes[0]
    assert f"{split['train']} rows of it trained the model and {split['val']} chose its epoch" in notes[0]
    assert split["test"] == 0 and "the run held no test rows out (--test 0, the default)" in notes[0]
    assert json.loads(cli("evaluate", str(run), str(data), "--json").stdout)["notes"] == [notes[0][len("note: ") :]]
    other = tmp_path / "other.csv"  # the same rows but one: not the file trained on, nothing said
    other.write_text("".join(data.read_text().splitlines(keepends=True)[:-1]))
    result = cli("evaluate", str(run), str(other))
    assert result.returncode == 0 and "note:" not in result.stderr, result.stderr


@pytest.mark.parametrize("groups", [1, 3])
def test_the_streamed_note_counts_its_chunks_in_words(tmp_path, groups):
    """Item 30: "in 1 chunk", "in 3 chunks"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 2)), columns=["a", "y"])
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, tmp_path / "s.parquet", row_group_size=300 // groups)
    out = tmp_path / "r"
    result = cli("train", str(tmp_path / "s.parquet"), "--stream", "--target", "y", "--epochs", "1", "-q",
                 "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = json.loads((out / "run.json").read_text())["notes"]
    expected = "in 1 chunk;" if groups == 1 else f"in {groups} chunks;"
    assert any(n.startswith("streamed: 300 rows ") and expected in n for n in notes), notes


def test_a_run_whose_start_was_best_says_so_not_epoch_0(tmp_path):
    """Item 30: epochs count from 1; a linear model started at least squares keeps its start."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    frame["y"] = 2 * frame.a - frame.b + 0.3 * rng.normal(size=200)
    frame.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "r"
    result = cli("train", str(tmp_path / "d.csv"), "--target", "y", "--model", "linear", "--epochs", "3", "-q",
                 "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["best_epoch"] == 0  # run.json's spelling: the weights training started from
    inspected = cli("inspect", str(out)).stdout
    assert ", best: the start (training did not beat it)" in inspected and "best epoch 0" not in inspected
    page = (out / "report.html").read_text()
    assert "<b>the start (training did not beat it)</b><span>best epoch</span>" in page, page[:3000]
    assert "<b>0</b><span>best epoch</span>" not in page


def test_the_classification_loss_plot_is_on_a_log_axis_as_regressions_is(classifier, tmp_path, monkeypatch):
    """Item 28: a log loss flat near 0 after a few epochs reads on a log axis; the plot's y axis is log."""
    from torchwork.report import plots

    scales = []
    draw = plots.plot_loss_curves

    def spy(*args, **kwargs):
        scales.append(kwargs.get("log_scale"))
        return draw(*args, **kwargs)

    monkeypatch.setattr(plots, "plot_loss_curves", spy)
    data, _ = classifier
    result = cli("train", str(data), "--target", "y", "--epochs", "3", "-q", "--out", str(tmp_path / "again"))
    assert result.returncode == 0, result.stderr
    assert scales == [True]


def test_a_forged_run_json_without_a_proper_data_record_gives_no_training_note(tmp_path):
    """``Run.trained_on`` reads run.json's ``data`` and ``split``: values of the wrong type (a
    forged file, found by the fuzzer) mean nothing to say, never a traceback."""
    import pandas as pd

    import torchwork

    frame = pd.DataFrame({"a": range(40), "y": [2.0 * i for i in range(40)]})
    run = torchwork.train(frame, target="y", epochs=2, verbose=False)
    for forged in ({"data": [1, 2]}, {"data": {"sha256": 5}}, {"data": {"sha256": run.info["data"]["sha256"]},
                   "split": [":", 3]}):  # fmt: skip
        run.info = forged
        note = run.trained_on(frame)
        if "split" in forged:  # the hash matches: the note is written, with no row counts to name
            assert note is not None and "trained" in note
        else:
            assert note is None


def test_evaluate_on_the_training_file_of_a_run_with_a_test_split_names_its_test_rows(classifier, tmp_path):
    data, _ = classifier
    out = tmp_path / "with-test"
    assert (
        cli("train", str(data), "--target", "y", "--epochs", "2", "--test", "0.2", "-q", "--out", str(out)).returncode
        == 0
    )
    split = json.loads((out / "run.json").read_text())["split"]
    result = cli("evaluate", str(out), str(data))
    assert result.returncode == 0, result.stderr
    assert split["test"] == 24 and "only its 24 test rows were held out" in result.stderr
