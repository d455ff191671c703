"""One check per rule: the configuration of ``train`` uses the rules that ``predict`` and ``convert`` use."""

from __future__ import annotations

import pytest

from torchwork.core.errors import InputError
from torchwork.data.csv import csv_options
from torchwork.runs.config import TrainConfig, load_config


@pytest.mark.parametrize(
    ("name", "char"), [("semicolon", ";"), ("tab", "\t"), ("pipe", "|"), ("comma", ","), (";", ";")]
)
def test_train_takes_the_delimiter_names_predict_and_convert_take(name, char):
    assert csv_options(None, name, None)["delimiter"] == char  # predict, convert
    assert load_config(None, {"delimiter": name}).validate().delimiter == char  # train


def test_a_bad_delimiter_is_refused_in_the_same_words_naming_the_flag_or_the_key(tmp_path):
    with pytest.raises(InputError) as flag:
        load_config(None, {"delimiter": "ab"}).validate()
    with pytest.raises(InputError) as other:
        csv_options(None, "ab", None)
    assert str(flag.value) == str(other.value)
    assert str(flag.value).startswith("--delimiter 'ab': expected one character")
    config = tmp_path / "run.toml"
    config.write_text('delimiter = "ab"\n')
    with pytest.raises(InputError, match=r"^.*run\.toml: key 'delimiter' 'ab': expected one character"):
        load_config(config).validate()


def test_the_decimal_mark_and_the_delimiter_cannot_be_the_same_in_train_either():
    with pytest.raises(InputError, match="cannot be the same character"):
        load_config(None, {"delimiter": "comma", "decimal": ","}).validate()


def test_a_codec_that_is_not_text_is_refused_by_train_as_by_predict():
    with pytest.raises(InputError, match="--encoding 'base64': not a text encoding"):
        load_config(None, {"encoding": "base64"}).validate()


def test_task_and_precision_follow_the_rules_the_table_and_the_trainer_use():
    config = TrainConfig().updated({"task": " Classification", "precision": "BF16-mixed"}).validate()
    assert (config.task, config.precision) == ("classification", "bf16-mixed")  # as choice() reads them
    with pytest.raises(InputError, match="--precision: expected one of 32, bf16-mixed, got '16'"):
        TrainConfig().updated({"precision": "16"}).validate()
