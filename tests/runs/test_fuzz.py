"""Property-based fuzzing (issue 11, "how to prove it"): CSV bytes, config files and model files, random or
mutated from valid ones, through `torchwork train`, `predict` and `inspect` in this process.

Whatever the bytes, the outcome is success, or exit 2 (1 only for the documented cases: a diverged
training, out of memory) with exactly one stderr line starting ``torchwork: error:``, and nothing left
behind: no run folder, no partial one, no output file. Any other exception escapes ``main`` and fails
the property (Hypothesis then shrinks it to a small input). Examples are derandomized so that CI sees
the same inputs every time; set TORCHWORK_FUZZ_EXAMPLES to run more.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as safetensors_save

from tests.support import cli
from torchwork.files.integrity import write_manifest
from torchwork.runs.config import option_fields

pytestmark = pytest.mark.slow  # Hypothesis drives the CLI through hundreds of cases

EXAMPLES = int(os.environ.get("TORCHWORK_FUZZ_EXAMPLES", "0"))


def fuzz(n: int) -> Any:
    return settings(
        max_examples=EXAMPLES or n, deadline=None, database=None, derandomize=not EXAMPLES, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )  # fmt: skip


DOCUMENTED_EXIT_1 = ("training diverged", "out of memory")


def outcome(result: subprocess.CompletedProcess, *leftovers: Path) -> bool:
    """True on success; else assert the one-line failure the CLI promises, and that nothing was left."""
    if currently_in_test_context():
        event(f"exit {result.returncode}")  # --hypothesis-show-statistics: how often each outcome came
    if result.returncode == 0:
        return True
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode in (1, 2), (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("torchwork: error: "), result.stderr
    assert "Traceback" not in result.stderr
    if result.returncode == 1:
        assert any(phrase in lines[0] for phrase in DOCUMENTED_EXIT_1), lines[0]
    for path in leftovers:
        assert not path.exists(), f"{path} left behind after: {lines[0]}"
    return False


@contextmanager
def workdir() -> Iterator[Path]:
    """A fresh folder for one example (pytest's tmp_path is one per test, not per example)."""
    with tempfile.TemporaryDirectory(prefix="tw-fuzz-") as folder:
        yield Path(folder)


def train(data: Path, work: Path, *flags: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = work / "run"
    result = cli("train", str(data), "--epochs", "1", "--hidden", "4", "--early-stopping", "0", "--out", str(out),
                 "-q", *flags)  # fmt: skip
    return result, out


# ------------------------------------------------------------ valid inputs
def valid_csv() -> bytes:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)).round(4), columns=["a", "b", "y"])
    frame.insert(2, "k", [["red", "green", "blue"][i % 3] for i in range(40)])
    return frame.to_csv(index=False).encode()


VALID_CSV = valid_csv()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "data.csv").write_bytes(VALID_CSV)
    result, out = train(tmp / "data.csv", tmp, "--target", "y")
    assert result.returncode == 0, result.stderr
    return out


def _saved(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


STATE = {"layer.weight": torch.arange(12.0).reshape(3, 4), "layer.bias": torch.tensor([1, 2, 3]),
         "scale": torch.ones(2, dtype=torch.float64)}  # fmt: skip
MODEL_FILES = {
    "m.pth": _saved(STATE),
    "m.safetensors": safetensors_save(STATE, metadata={"note": "x"}),
    "m.npy": _npy(np.arange(30.0).reshape(10, 3)),
}

# ------------------------------------------------------------ mutations
TOKENS = [b"\0", b'"', b'""', b'"a,b"', b"\n", b"\r\n", b"\r", b"\n\n\n", b",", b",,", b";", b"\t", b"|", b" ",
          b"1e999", b"-1e309", b"1e38", b"9" * 400, b"0x1F", b"1_000", b"nan", b"NaN", b"inf", b"-inf", b"null",
          b"True", b"2024-02-30", b"=1+1", b"#", b"\xef\xbb\xbf", b"\xff\xfe", b"\x80", b"\xc3", b"a", b"y", b"k",
          b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff\xff\xff\xff\xff"]  # fmt: skip

position = st.floats(0, 1)  # where, as a fraction of the length (lengths change as mutations apply)
mutation = st.one_of(
    st.tuples(st.just("delete"), position, st.integers(1, 64)),
    st.tuples(st.just("duplicate"), position, st.integers(1, 256)),
    st.tuples(st.just("insert"), position, st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=8))),
    st.tuples(st.just("overwrite"), position, st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=8))),
    st.tuples(st.just("flip"), position, st.integers(0, 7)),
    st.tuples(st.just("truncate"), position, st.just(0)),
)


def mutate(data: bytes, mutations: list[tuple[str, float, Any]]) -> bytes:
    out = bytearray(data)
    for kind, where, arg in mutations:
        at = min(int(where * len(out)), max(len(out) - 1, 0))
        if kind == "delete":
            del out[at : at + arg]
        elif kind == "duplicate":
            out[at:at] = out[at : at + arg]
        elif kind == "insert":
            out[at:at] = arg
        elif kind == "overwrite":
            out[at : at + len(arg)] = arg
        elif kind == "flip" and out:
            out[at] ^= 1 << arg
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.lists(mutation, min_size=1, max_size=6).map(lambda ms: mutate(valid, ms))


def overwritten_tail(valid: bytes) -> st.SearchStrategy[bytes]:
    """A few bytes changed in the second half (where a file's data lies, after its header): sizes still agree."""
    change = st.tuples(st.just("overwrite"), st.floats(0.5, 1), st.binary(min_size=1, max_size=4))
    return st.lists(change, min_size=1, max_size=3).map(lambda ms: mutate(valid, ms)[: len(valid)])


def with_cells(valid: bytes, changes: list[tuple[float, float, bytes]]) -> bytes:
    """``valid`` with some cells (row, column as fractions) replaced: the table's shape kept, its values odd."""
    rows = [line.split(b",") for line in valid.split(b"\n")]
    for row, column, token in changes:
        cells = rows[min(int(row * len(rows)), len(rows) - 1)]
        cells[min(int(column * len(cells)), len(cells) - 1)] = token
    return b"\n".join(b",".join(cells) for cells in rows)


NUMBERISH = [b"", b"nan", b"NA", b"0", b"-0", b"+4", b".5", b"5.", b"1E5", b" 3 ", b"1e38", b"1e-45", b"-1e-320",
             b"123456789012345678901234567890", b"red", b"RED", b"\xc3\xa9t\xc3\xa9", b"3.4028235e38"]  # fmt: skip
cell = st.one_of(st.sampled_from(TOKENS), st.binary(max_size=6), st.text(max_size=6).map(str.encode))


def odd_cells(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    changes = st.lists(st.tuples(position, position, values), min_size=1, max_size=4)
    return changes.map(lambda c: with_cells(VALID_CSV, c))


csv_bytes = st.one_of(
    st.binary(max_size=600), mutated(VALID_CSV), odd_cells(cell), odd_cells(st.sampled_from(NUMBERISH))
)


# ---------------------------------------------------------------- (a) CSV
@fuzz(24)
@given(data=csv_bytes, target=st.sampled_from(["y", "k", "a,y"]))
def test_train_on_fuzzed_csv_bytes(data, target):
    with workdir() as work:
        (work / "d.csv").write_bytes(data)
        result, out = train(work / "d.csv", work, "--target", target)
        if outcome(result, out, Path(f"{out}.partial")):
            assert (out / "manifest.json").is_file()
        else:
            assert sorted(p.name for p in work.iterdir()) == ["d.csv"]


@fuzz(100)
@given(data=csv_bytes)
def test_predict_on_fuzzed_csv_bytes(trained, data):
    with workdir() as work:
        (work / "d.csv").write_bytes(data)
        pred = work / "pred.csv"
        result = cli("predict", str(trained), str(work / "d.csv"), "--out", str(pred))
        if outcome(result, pred):
            assert "prediction" in pred.read_text().splitlines()[0]
        else:
            assert sorted(p.name for p in work.iterdir()) == ["d.csv"]


@fuzz(20)
@given(data=mutated(MODEL_FILES["m.npy"]))
def test_train_on_a_fuzzed_npy(data):
    with workdir() as work:
        (work / "d.npy").write_bytes(data)
        result, out = train(work / "d.npy", work, "--target", "2")
        outcome(result, out, Path(f"{out}.partial"))


# ------------------------------------------------------------ (b) configs
KEYS = [f.name for f in option_fields() if f.name != "compile"]  # compile: minutes of torch.compile, not a check
WORDS = [
    "mlp",
    "linear",
    "tutorial",
    "evil:Net",
    "this:Zen",
    ".rel:X",
    "auto",
    "cpu",
    "cuda",
    "cuda:7",
    "adam",
    "lbfgs",
    "sgd",
    "step",
    "cosine",
    "onecycle",
    "plateau",
    "balanced",
    "y",
    "a",
    "k",
    "a,b",
    "y,a",
    "utf-8",
    "latin-1",
    ",",
    ";",
    "tab",
    ".",
    "0.5",
    "-1",
    "1e999",
    "bf16-mixed",
    "regression",
    "classification",
    "4GB",
]
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-3, 300), st.floats(),
    st.text(max_size=12), st.sampled_from(WORDS),
)  # fmt: skip
value = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
key = st.one_of(st.sampled_from(KEYS), st.sampled_from(["epochz", "", "model-args", "Target"]), st.text(max_size=8))
COLUMNS = ["a", "b", "k", "y", "zz", "", "A"]
BY_KIND: dict[str, st.SearchStrategy[Any]] = {  # values of an option's own kind, odd ones included: they get further
    "path": st.sampled_from(["d.csv", "nope.csv", "/dev/null", ""]),
    "columns": st.one_of(st.lists(st.sampled_from(COLUMNS), max_size=3), st.sampled_from(["a,b", "y", "k", "y,a"])),
    "str": st.one_of(st.sampled_from(WORDS), st.text(max_size=6)),
    "bool": st.booleans(),
    "int": st.one_of(st.integers(-5, 50), st.integers(2**60, 2**66)),
    "count": st.one_of(st.integers(-1, 40), st.integers(2**62, 2**66)),
    "fraction": st.floats(-0.5, 1.5),
    "positive": st.one_of(st.floats(0, 1e40), st.sampled_from([1e-3, 0.1, 1.0])),
    "ints": st.lists(st.integers(-1, 16), max_size=3),
    "dict": st.dictionaries(
        st.one_of(st.sampled_from(["x", "gamma", "step_size", "skip"]), st.text(max_size=4)), leaf, max_size=2
    ),
    "bytes": st.sampled_from(["4GB", "1MiB", "512KiB", "10", "lots", 2**30]),
}
KIND_OF = {f.name: f.metadata["kind"].rstrip("?").replace("nonnegative", "positive").replace("count0", "count")
           .replace("names", "columns") for f in option_fields()}  # fmt: skip
typed = st.sampled_from(KEYS).flatmap(lambda k: st.tuples(st.just(k), BY_KIND.get(KIND_OF[k], leaf)))
document = st.one_of(st.dictionaries(key, value, max_size=5), st.lists(typed, max_size=6).map(dict))


def toml_value(v: Any) -> str | None:
    """TOML for ``v`` (None: TOML cannot hold it; the key is left out)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)  # beyond 64 bits TOML refuses it: a parse error is an outcome too
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        items = [toml_value(x) for x in v]
        return "[" + ", ".join(i for i in items if i is not None) + "]"
    if isinstance(v, dict):
        pairs = [(k, toml_value(x)) for k, x in v.items()]
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {t}" for k, t in pairs if t is not None) + "}"
    return None


def toml_text(doc: dict[str, Any]) -> str:
    lines = [f"{json.dumps(k, ensure_ascii=False)} = {t}" for k, v in doc.items() if (t := toml_value(v)) is not None]
    return "\n".join(lines) + "\n"


VALID_CONFIGS = {
    "c.toml": b'target = "y"\nmodel = "mlp"\nhidden = [4]\nlr = 0.01\nscheduler = "step"\n'
    b"[scheduler_args]\nstep_size = 2\n[optimizer_args]\nbetas = [0.9, 0.99]\n",
    "c.yaml": b"target: y\nfeatures: [a, b, k]\nloss: huber\nbatch_size: 16\nclass_weight: null\nseed: 3\n",
}
config_file = st.one_of(
    st.tuples(st.just("c.toml"), document.map(lambda d: toml_text(d).encode())),
    st.tuples(st.just("c.yaml"), document.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode())),
    st.tuples(st.sampled_from(["c.toml", "c.yaml"]), st.text(max_size=200).map(str.encode)),
    st.tuples(st.just("c.toml"), mutated(VALID_CONFIGS["c.toml"])),
    st.tuples(st.just("c.yaml"), mutated(VALID_CONFIGS["c.yaml"])),
)


@fuzz(60)
@given(config=config_file)
def test_train_with_a_fuzzed_config_file(config):
    name, text = config
    with workdir() as work:
        (work / "d.csv").write_bytes(VALID_CSV)
        (work / name).write_bytes(text)
        (work / "evil.py").write_text("import pathlib\npathlib.Path('CANARY').touch()\n")
        cwd = os.getcwd()
        os.chdir(work)  # a class named in the file would be looked for here, and must not be imported
        try:
            result, out = train(work / "d.csv", work, "--config", str(work / name), "--target", "y")
        finally:
            os.chdir(cwd)
        outcome(result, out, Path(f"{out}.partial"))
        assert not (work / "CANARY").exists()


def test_the_config_writers_write_what_the_reader_reads(tmp_path):
    """The fuzzed documents are real TOML and YAML: a valid one trains."""
    doc = {"target": "y", "lr": 0.01, "hidden": [4], "optimizer_args": {"betas": [0.9, 0.99]}, "class_weight": None}
    for name, text in (("c.toml", toml_text(doc)), ("c.yaml", yaml.safe_dump(doc))):
        (tmp_path / name).write_text(text)
        (tmp_path / "d.csv").write_bytes(VALID_CSV)
        result, out = train(tmp_path / "d.csv", tmp_path, "--config", str(tmp_path / name))
        assert result.returncode == 0, (name, text, result.stderr)
        assert json.loads((out / "config.json").read_text())["optimizer_args"] == {"betas": [0.9, 0.99]}
        shutil.rmtree(out)


# ------------------------------------------------------------ (c) model files
model_file = st.sampled_from(sorted(MODEL_FILES)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        st.one_of(mutated(MODEL_FILES[name]), overwritten_tail(MODEL_FILES[name]), st.binary(max_size=300)),
    )
)


@fuzz(200)
@given(model=model_file)
def test_inspect_a_fuzzed_model_file(model):
    name, data = model
    with workdir() as work:
        (work / name).write_bytes(data)
        outcome(cli("inspect", str(work / name)))
        outcome(cli("inspect", str(work / name), "--json"))
        assert sorted(p.name for p in work.iterdir()) == [name]


@fuzz(80)
@given(data=st.data())
def test_predict_with_fuzzed_weights_and_a_recomputed_manifest(trained, data):
    """An attacker rewrites model.safetensors (and the manifest): it loads as weights, or is refused in one line."""
    raw = (trained / "model.safetensors").read_bytes()
    forged = data.draw(st.one_of(mutated(raw), overwritten_tail(raw), mutated(raw[:200]), st.binary(max_size=200)))
    with workdir() as work:
        run = work / "run"
        shutil.copytree(trained, run)
        (run / "model.safetensors").write_bytes(forged)
        write_manifest(run)
        (work / "d.csv").write_bytes(VALID_CSV)
        pred = work / "pred.csv"
        if outcome(cli("predict", str(run), str(work / "d.csv"), "--out", str(pred)), pred):
            assert pred.is_file()
        outcome(cli("inspect", str(run)))


# ------------------------------------------------------------ found by fuzzing, fixed
def test_a_constant_target_trains_without_a_warning(tmp_path):
    """Its losses are all 0: the loss plot drew them on a log scale, and matplotlib warned on stderr."""
    frame = pd.read_csv(io.BytesIO(VALID_CSV)).assign(y=0.0)
    frame.to_csv(tmp_path / "d.csv", index=False)
    result, out = train(tmp_path / "d.csv", tmp_path, "--target", "y")  # a warning is an error under pytest
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert (out / "plots" / "loss.png").is_file()


def test_the_tutorial_models_train_on_one_numeric_feature(tmp_path):
    """A run passes its (empty) list of category columns: the tutorial's models refused it, whatever the data."""
    (tmp_path / "d.csv").write_bytes(VALID_CSV)
    for name in ("tutorial", "tutorial_v2"):
        result, out = train(tmp_path / "d.csv", tmp_path, "--target", "y", "--features", "a", "--model", name)
        assert result.returncode == 0, result.stderr
        assert cli("predict", str(out), str(tmp_path / "d.csv"), "--allow-extra-columns").returncode == 0
        shutil.rmtree(out)
    result, out = train(tmp_path / "d.csv", tmp_path, "--target", "y", "--features", "a,k", "--model", "tutorial")
    outcome(result, out)
    assert "fits one numeric feature to one target, got 2 features" in result.stderr


# ------------------------------------------------------------ found by fuzzing
# Each input below escaped as a traceback (or an extra stderr line) before it was fixed. The fuzz strategies
# above do not draw them (optimizer options get random names; encodings come from a fixed list).
@pytest.mark.parametrize(
    "options",
    [
        pytest.param('optimizer = "adam"\n[optimizer_args]\nbetas = [0.9]\n', id="betas-of-one"),
        pytest.param('optimizer = "adam"\n[optimizer_args]\nbetas = [0.9, 0.99, 0.5]\n', id="betas-of-three"),
        pytest.param('optimizer = "adam"\n[optimizer_args]\nfused = true\n', id="fused"),
        pytest.param('optimizer = "adam"\n[optimizer_args]\ncapturable = true\n', id="capturable-on-cpu"),
        pytest.param('optimizer = "rmsprop"\n[optimizer_args]\nalpha = 1e39\n', id="alpha-over-float32"),
        pytest.param('scheduler = "onecycle"\n[scheduler_args]\nmax_lr = 1e39\n', id="max-lr-over-float32"),
    ],
)
def test_optimizer_and_scheduler_options_torch_refuses_are_one_line(tmp_path, options):
    """Refused in one line before training (or, for fused, made to work): never a traceback at the first step."""
    (tmp_path / "d.csv").write_bytes(VALID_CSV)
    (tmp_path / "c.toml").write_text(options)
    result, out = train(tmp_path / "d.csv", tmp_path, "--config", str(tmp_path / "c.toml"), "--target", "y")
    trained = outcome(result, out, Path(f"{out}.partial"))
    assert trained == ("fused" in options), result.stderr  # fused works on CPU once foreach is not also asked


@pytest.mark.parametrize("encoding", ["utf-16", "punycode"])
def test_an_encoding_whose_codec_raises_unicode_error_is_one_line(tmp_path, encoding):
    (tmp_path / "d.csv").write_bytes(VALID_CSV)
    result, out = train(tmp_path / "d.csv", tmp_path, "--target", "y", "--encoding", encoding)
    assert not outcome(result, out, Path(f"{out}.partial"))
    assert f"line 1: not valid {encoding} text" in result.stderr, result.stderr


# ------------------------------------------------------------ (d) forged run documents
def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in a JSON document."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _replaced(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    doc = doc.copy()
    doc[path[0]] = _replaced(doc[path[0]], path[1:], new)
    return doc


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False),
                      st.text(max_size=6), st.just([]), st.just({}), st.just([1, 2]), st.just({"a": 1}))  # fmt: skip


@fuzz(60)
@given(data=st.data(), name=st.sampled_from(["model.json", "run.json", "metrics.json", "config.json"]))
def test_a_forged_run_document_loads_or_is_refused_in_one_line(trained, data, name):
    """One value anywhere in a run's JSON replaced, the manifest recomputed: predict and inspect work, or
    refuse in one line."""
    doc = json.loads((trained / name).read_text())
    path = data.draw(st.sampled_from(_paths(doc)[1:]))
    forged = _replaced(doc, path, data.draw(json_leaf))
    with workdir() as work:
        run = work / "run"
        shutil.copytree(trained, run)
        (run / name).write_text(json.dumps(forged))
        write_manifest(run)
        (work / "d.csv").write_bytes(VALID_CSV)
        pred = work / "pred.csv"
        outcome(cli("predict", str(run), str(work / "d.csv"), "--out", str(pred)), pred)
        outcome(cli("evaluate", str(run), str(work / "d.csv")))
        outcome(cli("inspect", str(run)))
