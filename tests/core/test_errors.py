"""core.errors.one_line: the one helper for an exception's (or a library's) one-line form."""

from __future__ import annotations

from torchwork.core.errors import InputError, one_line


def test_the_first_non_empty_line_with_its_whitespace_collapsed():
    assert one_line(RuntimeError("\n  bad   size\nC++ backtrace:\n frame #0")) == "bad size"


def test_every_line_joined_when_asked():
    assert one_line("a\n  b\tc", None, first_line=False) == "a b c"


def test_unprintable_characters_become_spaces_and_the_length_is_bounded():
    assert one_line("x\x1b[31my\x00z") == "x [31my z"
    assert one_line("a" * 500, 20) == "a" * 17 + "..."
    assert len(one_line("b" * 500)) == 200


def test_an_exception_without_a_message_gives_its_type():
    assert one_line(KeyError()) == "KeyError"
    assert one_line(InputError("")) == "InputError"


def test_the_cli_prints_a_multi_line_error_as_one_line(capsys, monkeypatch):
    import torchwork.runs.lifecycle as lifecycle
    from torchwork.cli import main

    def refuse(*args, **kwargs):
        raise InputError("d.csv: first\n  second\x07 line")

    monkeypatch.setattr(lifecycle, "train_run", refuse)
    assert main(["train", "d.csv", "--target", "y"]) == 2
    assert capsys.readouterr().err == "torchwork: error: d.csv: first second line\n"
    assert main(["train", "--target", "y", "--epochs", "x"]) == 2  # click's usage errors: one line too
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("torchwork: error: --epochs: expected an integer")
