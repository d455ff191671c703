"""The ``torchwork`` command: a thin layer that parses arguments and calls the library.

Heavy modules (torch, pandas, matplotlib) are imported inside the commands that need them, so
``torchwork --help`` answers at once. Errors that torchwork understands, and bad command-line
usage, print one line on stderr, ``torchwork: error: ...``, and exit non-zero (2 for bad
input); a bare ``torchwork`` prints its usage.

``torchwork train``'s flags come from :class:`~torchwork.runs.config.TrainConfig`: every option
is a flag with the same name (``--batch-size`` for ``batch_size``), its help and default from the
configuration, its value checked by the configuration's rules (so ``--epochs x`` reads
``--epochs: expected an integer, got 'x'``). A flag that takes one value may be given once: a
second one is an error, not a silent override. :func:`options_table` renders the options as
the README's Markdown table.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from torchwork.core import __version__
from torchwork.core.errors import counted, one_line
from torchwork.runs.config import GROUPS, default_of, group_of, help_of, option_fields

# ---------------------------------------------------------------------------- the command group
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class InOrder(click.Group):
    """Commands listed in the order of the workflow, not alphabetically."""

    ORDER = ("demo", "train", "predict", "evaluate", "inspect", "resume", "export", "sign", "convert")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands, key=lambda name: (*self.ORDER, name).index(name))


@click.group(cls=InOrder, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="torchwork")
def cli() -> None:
    """torchwork: the whole PyTorch workflow (data, model, loss and optimizer, training and
    testing loops, prediction, evaluation, saving and loading) in one tool.

    Start with `torchwork demo` (the tutorial) or `torchwork train DATA --target COL`.
    """


# --------------------------------------------------------------- options from the configuration
# Options only a config file sets (tables), and the positional DATA argument.
FILE_ONLY = ("data", "model_args", "optimizer_args", "scheduler_args")
METAVARS = {"count": "N", "count0": "N", "int": "N", "positive": "X", "nonnegative": "X", "fraction": "F",
            "ints": "N,N,...", "names": "A,B,...", "columns": "COL[,COL]", "str": "NAME", "path": "PATH",
            "bytes": "SIZE"}  # fmt: skip


def once(default: Any = None) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A callback: the flag's one value (``default`` when not given); given twice is an error."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if isinstance(value, tuple):
            if len(value) > 1:
                name = param.opts[0] if param.opts else param.name
                raise click.UsageError(
                    f"{name} given {len(value)} times; give it once (lists are comma-separated: A,B)"
                )
            return value[0] if value else default
        return value

    return callback


def option(
    *decls: str, default: Any = None, show_default: bool = False, help: str = "", **kw: Any
) -> Callable[[Any], Any]:
    """``click.option`` that refuses to be given twice."""
    if show_default and default is not None:
        help = f"{help} [default: {default}]"
    return click.option(*decls, multiple=True, callback=once(default), help=help, **kw)


def flag(*decls: str, **kw: Any) -> Callable[[Any], Any]:
    """A boolean flag (``--x`` or ``--x/--no-x``) that refuses to be given twice."""
    if not any("/" in d for d in decls):
        kw.setdefault("is_flag", True)
    return click.option(*decls, multiple=True, callback=once(), **kw)


def _decl(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_options(f: Any) -> Any:
    """One flag per configuration option (they override ``--config``)."""
    for field in reversed(option_fields()):
        if field.name in FILE_ONLY:
            continue
        kind = field.metadata["kind"].rstrip("?")
        if kind == "bool":
            f = flag(f"{_decl(field.name)}/--no-{field.name.replace('_', '-')}", field.name, help=help_of(field.name))(
                f
            )
        else:
            f = option(_decl(field.name), field.name, metavar=METAVARS.get(kind, "VALUE"), help=help_of(field.name))(f)
    return f


def options_table() -> str:
    """The README's table of ``torchwork train``'s configuration options, from the configuration itself."""
    lines = ["| option | default | what |", "|---|---|---|"]
    for field in option_fields():
        if field.name in FILE_ONLY:
            continue
        kind = field.metadata["kind"].rstrip("?")
        decl = _decl(field.name)
        shown = (
            f"`{decl}/--no-{field.name.replace('_', '-')}`"
            if kind == "bool"
            else f"`{decl} {METAVARS.get(kind, 'VALUE')}`"
        )
        default = field.metadata.get("default_help")
        if default is None:
            value = default_of(field.name)
            default = ",".join(map(str, value)) if isinstance(value, list) else "none" if value is None else value
            if kind == "bool":
                default = "on" if value else "off"
        lines.append(f"| {shown} | {default} | {field.metadata['help']} |")
    return "\n".join(lines)


class Grouped(click.Command):
    """A command whose --help shows its options in groups (``GROUPS``, in that order): each option's
    group is the configuration's (``group_of``), or ``CLI_GROUPS``'s for the flags only the command has."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, tuple[list[Any], list[Any], list[Any]]] = {key: ([], [], []) for key in (*GROUPS, "")}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or param.name is None or isinstance(param, click.Argument):
                continue
            if param.name in CLI_GROUPS:
                first, key = CLI_GROUPS[param.name]
                rows[key][0 if first else 2].append(record)
            else:
                rows[group_of(param.name) if param.name in FIELD_NAMES else ""][1].append(record)
        for key, title in (*GROUPS.items(), ("", "Other options")):
            head, body, tail = rows[key]
            if head or body or tail:
                with formatter.section(title):
                    formatter.write_dl([*head, *body, *tail])


FIELD_NAMES = frozenset(field.name for field in option_fields())
# The flags only `torchwork train` has: (shown first in the group, the group).
CLI_GROUPS = {"config_file": (False, "data"), "trust_model_code": (False, "model"), "out": (True, "output"),
              "overwrite": (True, "output"), "quiet": (True, "output"), "nproc": (False, "processes")}  # fmt: skip


# ----------------------------------------------------------------------------- train and resume
NPROC_HELP = (
    "Train in N processes on this machine (torchrun's launcher; gloo on CPU, NCCL on CUDA). "
    "For several machines, start `torchwork train` with torchrun on each."
)
RESUME_NPROC_HELP = "Resume in N processes on this machine (as many as the run was trained in)."


@cli.command(cls=Grouped)
@click.argument("data", required=False, metavar="DATA")
@option("--config", "config_file", metavar="FILE", help="TOML or YAML file of options (flags override it).")
@option("--out", metavar="RUN_DIR", help="Run folder to create [default: runs/<data>-<time>, never an existing one].")
@flag("--overwrite", help="Replace RUN_DIR if it holds a torchwork run (never a folder of yours).")
@flag("-q", "--quiet", help="No progress output.")
@flag("--trust-model-code", help="Allow a config file to name your own model class (importing it runs its code).")
@option("--nproc", type=click.IntRange(min=1), metavar="N", help=NPROC_HELP)
@train_options
def train(
    data: str | None, config_file: str | None, out: str | None, overwrite: bool | None, quiet: bool | None,
    trust_model_code: bool | None, nproc: int | None, **flags: Any,
) -> None:  # fmt: skip
    """Train a model on DATA (CSV, Parquet, .npy or .npz) and write a run folder.

    With only --target: each column's kind is inferred (numbers, categories, dates), missing
    values are filled in, the task is regression for numbers and classification for labels,
    and an MLP starting from a closed-form fit (least squares or ridge, or logistic regression)
    is trained with Adam and early stopping on a validation split. The run folder holds the
    model (safetensors + JSON), history.csv, metrics.json (with the baselines on the same
    split), plots and report.html.
    """
    _launch(nproc)
    from torchwork.runs.config import load_config
    from torchwork.runs.lifecycle import train_run

    overrides = {k: v for k, v in flags.items() if v is not None}
    if data is not None:
        overrides["data"] = data
    config = load_config(config_file, overrides)
    run = train_run(config, out=out, overwrite=bool(overwrite), verbose=not quiet,
                    trust_model_code=bool(trust_model_code), unique_out=out is None)  # fmt: skip
    click.get_current_context().obj["complete"] = run.path
    print_summary(run)


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@flag("-q", "--quiet", help="No progress output.")
@flag("--trust-model-code", help="Allow importing the run's own model class.")
@option("--nproc", type=click.IntRange(min=1), metavar="N", help=RESUME_NPROC_HELP)
def resume(run_dir: str, quiet: bool | None, trust_model_code: bool | None, nproc: int | None) -> None:
    """Continue an interrupted or killed run from its last checkpoint (RUN_DIR or RUN_DIR.partial).

    The data file must be unchanged (its SHA-256 is checked). The result is bit-identical to
    a run that was never interrupted (same device). A run whose training had finished when it
    was stopped is only written out: nothing is trained again.
    """
    _launch(nproc)
    from torchwork.runs import lifecycle

    run = lifecycle.resume(run_dir, trust_model_code=bool(trust_model_code), verbose=not quiet)
    click.get_current_context().obj["complete"] = run.path
    print_summary(run)


def _launch(nproc: int | None) -> None:
    """With ``--nproc N`` (N > 1): this command again in N processes; exit with the job's code."""
    if nproc is not None and nproc > 1:
        from torchwork.training.distributed import launch, without_nproc

        raise click.exceptions.Exit(launch(nproc, without_nproc(click.get_current_context().obj["argv"])))


def print_summary(run: Any) -> None:
    """What the run gave, in five lines: folder, epochs, test metrics, verdict, report (rank 0 of a group only)."""
    import os

    if os.environ.get("RANK", "0") != "0":
        return
    from torchwork.report.html import verdict

    m = run.metrics["model"]
    part = next(p for p in ("test", "val", "train") if p in m)
    t = m[part]
    click.echo(f"run:     {run.path}")
    stopped = " (stopped early)" if run.info["stopped_early"] else ""
    if run.info.get("kept_start"):  # the start was kept: say so, not "stopped early" alone
        stopped = f" ({run.info['kept_start']})"
    click.echo(f"epochs:  {run.info['epochs_run']}{stopped}")
    if run.metrics.get("task") == "classification":
        auc = f" | ROC-AUC {t['roc_auc']:.4g}" if t.get("roc_auc") is not None else ""
        click.echo(f"metrics: accuracy {t['accuracy']:.4g} | balanced accuracy {t['balanced_accuracy']:.4g} | "
                   f"macro-F1 {t['f1_macro']:.4g} | log loss {t['log_loss']:.4g}{auc} ({part})")  # fmt: skip
    else:
        click.echo(f"metrics: MAE {t['mae']:.6g} | RMSE {t['rmse']:.6g} | R² {t['r2']:.6g}")
    click.echo(f"verdict: {verdict(run.metrics)[0]}")
    click.echo(f"report:  {run.path / 'report.html'}")


# --------------------------------------------------------------------------- the other commands
TRUST = "Allow importing the run's own model class (it runs that module's code)."
VERIFY = "Refuse the run unless it is signed with the private key of this public key (PEM)."


def _load(run_dir: str, trust_model_code: bool | None, verify_key: str | None, data: str | None = None) -> Any:
    from torchwork.runs.folder import load_run

    run = load_run(run_dir, trust_model_code=bool(trust_model_code), verify_key=verify_key, data_hint=data)
    _verified(verify_key)
    return run


def _verified(verify_key: str | None) -> None:
    """Say that the signature checked (on stderr: stdout may be the command's data)."""
    if verify_key is not None:
        click.echo(f"signature verified (key {verify_key})", err=True)


@cli.command()
@option("--out", default=".", show_default=True, metavar="DIR", help="Folder for models/ and plots/.")
@option("--device", default="auto", show_default=True, help="auto (cuda, then mps, then cpu), cpu, cuda or cuda:N.")
def demo(out: str, device: str) -> None:
    """Run the tutorial "PyTorch Workflow Fundamentals", sections 1 to 6.

    Prints what the tutorial prints and writes DIR/models/01_pytorch_workflow_model_{0,1}.pth
    and DIR/plots/*.png. On the CPU the numbers are the tutorial's exactly.
    """
    from torchwork.demo import run_demo

    run_demo(out, device)


CHUNKED_FROM = 64 << 20  # a CSV or Parquet file larger than this is predicted for in chunks


def _large(data: str) -> bool:
    """A CSV or Parquet file too large to read whole comfortably: predicted for in chunks."""
    from pathlib import Path

    path = Path(data)
    suffix = path.suffix.lower()
    return (
        suffix in (".csv", ".tsv", ".txt", ".parquet", ".pq") and path.is_file() and path.stat().st_size > CHUNKED_FROM
    )


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.argument("data", metavar="DATA")
@option("--out", metavar="PRED.csv", help="Write here (.csv or .parquet) [default: CSV on stdout].")
@flag("--overwrite", help="Replace --out if it exists (never DATA itself).")
@option("--column", metavar="NAME", help="Name of the prediction column [default: prediction].")
@flag("--proba/--no-proba", help="A classifier's probability of each class, one column each [default: on].")
@flag("--allow-extra-columns", help="Keep columns the model does not use (they pass through).")
@flag("--drop-missing", help="Leave out rows with a missing value instead of filling it in as in training.")
@flag("--trust-model-code", help=TRUST)
@option("--verify-key", metavar="PUB", help=VERIFY)
@option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    metavar="N",
    help="Predict N rows at a time, with --out [default: the whole file at once up to 64 MiB, else 65536].",
)
def predict(
    run_dir: str, data: str, out: str | None, overwrite: bool | None, column: str | None, proba: bool | None,
    allow_extra_columns: bool | None, drop_missing: bool | None, trust_model_code: bool | None, verify_key: str | None,
    chunk_rows: int | None,
) -> None:  # fmt: skip
    """Predict for the rows of DATA with the model in RUN_DIR: the rows plus prediction columns.

    DATA must have the model's feature columns (in any order); a missing or unexpected
    column is an error that names it. The target column may be present. A classifier adds
    the predicted label (as spelled in training) and each class's probability.
    """
    from torchwork.files.atomic import check_output, write_table

    run = _load(run_dir, trust_model_code, verify_key, data)
    if out is not None:
        check_output(out, overwrite=bool(overwrite), inputs=[data])
    if chunk_rows is not None and out is None:
        raise click.UsageError("--chunk-rows writes to a file: give --out")
    if out is not None and (chunk_rows is not None or _large(data)):
        counts = run.predict_file(data, out, rows=chunk_rows or 65536, column=column, proba=proba is not False,
                                  drop_missing=bool(drop_missing), allow_extra=bool(allow_extra_columns),
                                  overwrite=bool(overwrite))  # fmt: skip
        for note in counts.notes():
            click.echo(f"note: {note}", err=True)
        if counts.dropped:
            click.echo(f"{counts.dropped} rows have a missing value: their prediction is empty", err=True)
        click.echo(f"wrote {counts.rows + counts.dropped} predictions to {out}", err=True)
        return
    frame, prediction = run.predict_table(
        data, column=column, proba=proba is not False, drop_missing=bool(drop_missing),
        allow_extra=bool(allow_extra_columns),
    )  # fmt: skip
    for note in prediction.notes():
        click.echo(f"note: {note}", err=True)
    if prediction.dropped:
        click.echo(f"{prediction.dropped} rows have a missing value: their prediction is empty", err=True)
    if out is None:
        click.echo(frame.to_csv(index=False), nl=False)
    else:
        write_table(frame, out, overwrite=bool(overwrite))
        click.echo(f"wrote {len(frame)} predictions to {out}", err=True)


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.argument("data", metavar="DATA")
@flag("--json", "as_json", help="Print the metrics as JSON.")
@flag("--drop-missing", help="Leave out rows with a missing value instead of filling it in as in training.")
@flag("--trust-model-code", help=TRUST)
@option("--verify-key", metavar="PUB", help=VERIFY)
def evaluate(
    run_dir: str, data: str, as_json: bool | None, drop_missing: bool | None, trust_model_code: bool | None,
    verify_key: str | None,
) -> None:  # fmt: skip
    """Metrics of RUN_DIR's model, and of its baselines, on labelled DATA.

    Regression: MAE, MSE, RMSE, R² (baseline: least squares). Classification: accuracy,
    balanced accuracy, macro-F1, log loss, ROC-AUC and the confusion matrix (baselines:
    logistic regression and the majority class).
    """
    run = _load(run_dir, trust_model_code, verify_key, data)
    result = run.evaluate(data, drop_missing=bool(drop_missing))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"rows: {result['rows']}" + (f" ({result['dropped']} dropped)" if result["dropped"] else ""))
    names = [n for n in ("model", "least_squares", "logistic_regression", "majority_class") if n in result]
    if result["task"] == "classification":
        keys = ("accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc")
        click.echo(f"{'':<20} " + " ".join(f"{k:>17}" for k in keys))
        for name in names:
            m = result[name]
            cells = " ".join(f"{'—' if m[k] is None else format(m[k], '.6g'):>17}" for k in keys)
            click.echo(f"{name:<20} {cells}")
        classes = [str(c) for c in run.classes]
        click.echo("confusion matrix (rows: actual, columns: predicted): " + ", ".join(classes))
        for label, row in zip(classes, result["model"]["confusion_matrix"], strict=True):
            click.echo(f"  {label:<18} " + " ".join(f"{v:>6}" for v in row))
    else:
        click.echo(f"{'':<15} {'MAE':>12} {'MSE':>12} {'RMSE':>12} {'R²':>12}")
        for name in names:
            m = result[name]
            click.echo(f"{name:<15} {m['mae']:>12.6g} {m['mse']:>12.6g} {m['rmse']:>12.6g} {m['r2']:>12.6g}")
    for column, n in result.get("unknown", {}).items():
        click.echo(f"note: {counted(n, 'row')} with a value of {column!r} never seen in training", err=True)
    for note in result.get("notes", []):  # e.g. the rows are the ones the run was trained on
        click.echo(f"note: {note}", err=True)


@cli.command()
@click.argument("path", metavar="FILE_OR_RUN_DIR")
@flag("--json", "as_json", help="Print the description as JSON.")
@option("--verify-key", metavar="PUB", help=VERIFY)
def inspect(path: str, as_json: bool | None, verify_key: str | None) -> None:
    """Show what a model file, a run folder, or an unfinished run (RUN_DIR.partial) holds.

    For a .pth/.pt/.safetensors file: each tensor's name, shape, dtype and values, and the
    device it was saved from. The file is loaded without running any code from it
    (weights_only=True, after a scan of its pickle) and onto the CPU, so a file saved on a
    GPU inspects on any machine. For a run folder: its manifest is checked first, then its
    model, columns, data, metrics and weights are shown; for an unfinished run, how far it got.
    """
    from torchwork.runs.folder import is_run_path, read_run_summary

    if is_run_path(path):
        from torchwork.report.inspect import format_run_summary

        summary = read_run_summary(path, verify_key=verify_key)
        _verified(verify_key)
        click.echo(json.dumps(summary, indent=2) if as_json else format_run_summary(summary))
        return
    from torchwork.report.inspect import describe_weights, format_description

    if verify_key is not None:
        raise click.UsageError(f"{path}: --verify-key checks a signed run folder, not a weights file")
    desc = describe_weights(path)
    click.echo(json.dumps(desc, indent=2) if as_json else format_description(desc))


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@option(
    "--format", "fmt", type=click.Choice(["onnx", "exported", "torchscript"]), default="onnx", show_default=True,
    help="onnx (runs with onnxruntime; needs pip install 'torchwork[onnx]'), exported (a torch.export .pt2; "
    "a plain install writes it) or torchscript (deprecated by PyTorch).",
)  # fmt: skip
@option("--out", metavar="FILE", help="Where to write it [default: RUN_DIR.onnx, .pt2 or .pt].")
@flag("--overwrite", help="Replace --out if it exists.")
@option("--data", metavar="DATA", help="Rows to check the export on [default: the run's validation rows].")
@flag("--trust-model-code", help=TRUST)
@option("--verify-key", metavar="PUB", help=VERIFY)
def export(
    run_dir: str, fmt: str, out: str | None, overwrite: bool | None, data: str | None, trust_model_code: bool | None,
    verify_key: str | None,
) -> None:  # fmt: skip
    """Write RUN_DIR's model as a file that runs without torchwork, its preprocessing included.

    It takes raw rows, not encoded ones: each value as it is in the table (NaN where missing),
    a date as its parts and a category as its code, in the order that FILE.vocabulary.json
    (written beside it, with each category's codes) lists; it fills and scales inside, and
    returns predictions in the target's units, or a classifier's class probabilities. Before
    reporting success, the file is loaded back (ONNX through onnxruntime) and its outputs are
    compared with torchwork's.
    """
    from pathlib import Path

    from torchwork.files.atomic import check_output
    from torchwork.runs.run import FORMAT_NAMES, FORMATS, check_format, check_rows, export_run

    check_format(fmt)  # the onnx extra, before the run is read
    run = _load(run_dir, trust_model_code, verify_key)
    target = Path(out) if out else Path(run_dir.rstrip("/") + FORMATS[fmt])
    check_output(target, overwrite=bool(overwrite), inputs=[])
    result = export_run(run, fmt, target, check_rows(run, data))
    click.echo(
        f"exported {run_dir} as {FORMAT_NAMES[fmt]} to {target} (inputs described in {result['vocabulary']}): "
        f"its outputs match torchwork's on {result['rows_checked']} rows "
        f"(max difference {result['max_abs_difference']:.3g})"
    )


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@option("--key", required=True, metavar="KEY", help="Private key (PEM, elliptic curve) to sign with.")
@option("--password-env", metavar="VAR", help="Environment variable holding the key's password, if it has one.")
def sign(run_dir: str, key: str, password_env: str | None) -> None:
    """Sign RUN_DIR with a private key (OpenSSF model signing; no network): RUN_DIR/signature.sig.

    Whoever receives the run checks it with `--verify-key PUB` on predict, evaluate, inspect
    and export (or torchwork.load_run(..., verify_key=PUB)); a run changed after signing,
    even with its manifest recomputed, is refused. Needs `pip install 'torchwork[signing]'`.
    """
    import os

    from torchwork.core.errors import InputError
    from torchwork.files.integrity import sign_folder
    from torchwork.runs.folder import complete_run_path

    password = None
    if password_env is not None:
        if password_env not in os.environ:
            raise InputError(f"--password-env {password_env}: no such environment variable")
        password = os.environ[password_env]
    folder = complete_run_path(run_dir)
    click.echo(f"signed {folder}: {sign_folder(folder, key, password=password)}")


@cli.command()
@click.argument("data", metavar="DATA.csv")
@click.argument("out", metavar="OUT.parquet")
@flag("--overwrite", help="Replace OUT if it exists (never DATA itself).")
@option("--encoding", metavar="NAME", help="Text encoding of DATA [default: utf-8].")
@option("--delimiter", metavar="CHAR", help="Delimiter [default: detected: comma, semicolon, tab or pipe].")
@option("--decimal", metavar="CHAR", help="Decimal mark of numbers [default: .].")
def convert(data: str, out: str, overwrite: bool | None, encoding: str | None, delimiter: str | None,
            decimal: str | None) -> None:  # fmt: skip
    """Convert a CSV file to Parquet, a block at a time (any size; memory stays at a block).

    Parquet reads faster, keeps each column's type, and streams (`torchwork train --stream`).
    Column types come from the file's first 4 MiB; integers become floats (a later row may
    hold a decimal or a gap).
    """
    from pathlib import Path

    from torchwork.data.csv import csv_options
    from torchwork.data.readers import write_parquet
    from torchwork.files.atomic import TableWriter, check_output

    if Path(out).suffix.lower() not in (".parquet", ".pq"):
        raise click.UsageError(f"{out}: the output is a .parquet file")
    if not Path(data).is_file():
        raise click.UsageError(f"{data}: no such file")
    options = csv_options(encoding, delimiter, decimal)
    check_output(out, overwrite=bool(overwrite), inputs=[data])
    rows = 0

    def write(writer: TableWriter) -> None:
        nonlocal rows
        rows = write_parquet(data, writer, **options)

    TableWriter.atomic(out, write, overwrite=bool(overwrite))
    click.echo(f"wrote {rows} rows to {out}", err=True)


# ------------------------------------------------------------------------------ the entry point
# Commands that write nothing, or only through atomic writes: interrupted, they leave nothing.
WRITE_NOTHING_PARTIAL = ("predict", "evaluate", "inspect", "export", "sign", "convert", "train", "resume")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning expected errors into one line and an exit code.

    SIGINT and SIGTERM raise where the command is (:mod:`torchwork.core.interrupts`): what it
    was writing is cleaned up, it says what was kept, and exits with 128 + the signal.
    """
    from torchwork.core import interrupts
    from torchwork.core.errors import Interrupted

    args = sys.argv[1:] if argv is None else list(argv)
    if not args:  # a bare `torchwork`: its usage, as `torchwork --help` prints it
        with click.Context(
            cli, info_name="torchwork", help_option_names=["-h", "--help"], max_content_width=100
        ) as ctx:
            click.echo(cli.get_help(ctx))
        return 0
    obj: dict[str, Any] = {"argv": args}
    try:
        with interrupts.as_exceptions():
            return _main(args, obj)
    except Interrupted as exc:  # held until the command ended, or while an earlier error was reported
        return _interrupted(exc, args, obj)


def _interrupted(exc: Any, args: list[str], obj: dict[str, Any]) -> int:
    """Say what an interrupt outside a run's own handling left; 128 + the signal."""
    if os.environ.get("RANK", "0") == "0":
        command = next((a for a in args if a in cli.commands), None)
        if obj.get("complete"):  # the run was written before the signal came
            text = f"{exc}; the run is complete in {obj['complete']}"
        elif command in WRITE_NOTHING_PARTIAL:
            text = f"{exc}; nothing was written"
        else:
            text = str(exc)
        click.echo(f"torchwork: {text}", err=True)
    return 128 + int(exc.signum)


def _main(args: list[str], obj: dict[str, Any]) -> int:
    from torchwork.core import interrupts
    from torchwork.core.errors import Interrupted

    try:
        code = cli.main(args=args, prog_name="torchwork", standalone_mode=False, obj=obj)
        if isinstance(code, int):  # click returns an Exit's code when it does not exit itself
            return code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except Interrupted as exc:
        return _interrupted(exc, args, obj)
    except click.Abort:
        click.echo("torchwork: aborted", err=True)
        return 130
    except click.ClickException as exc:
        where = getattr(exc, "ctx", None)
        hint = f" (see '{where.command_path} --help')" if where is not None else ""
        click.echo(
            f"torchwork: error: {one_line(exc.format_message(), None, first_line=False).rstrip('.')}{hint}", err=True
        )
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("torchwork: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except MemoryError:
        click.echo(
            "torchwork: error: out of memory (for tables larger than memory, use Parquet with --stream)", err=True
        )
        return 1
    except Exception as exc:
        from torchwork.core.errors import TorchworkError

        if isinstance(exc, TorchworkError):
            if exc.exit_code > 128:  # a signal stopped the fit: the process ends, further ones are ignored
                interrupts.stopping()
            if _reports(exc):
                click.echo(f"torchwork: error: {one_line(exc, None, first_line=False)}", err=True)
            return exc.exit_code
        raise
    return 0


def _reports(exc: Exception) -> bool:
    """Whether this process prints ``exc``: in a process group, errors every process shares are
    printed by rank 0 alone; a process that lost the others says so itself."""
    import os

    from torchwork.core.errors import GroupFailed

    return os.environ.get("RANK", "0") == "0" or isinstance(exc, GroupFailed)


def without_working_directory() -> None:
    """Take the current folder off ``sys.path`` (an empty ``PYTHONPATH`` entry puts it there): a
    ``yaml.py`` lying there is never imported in place of PyYAML. The ``torchwork`` command calls it
    first (``python -m torchwork`` does the same in ``__main__``); ``--model mymodule:Net`` puts the
    folder back for its own import."""
    here = os.path.realpath(os.getcwd())
    sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != here]


def exit_with(code: int) -> None:
    """End the process with ``code``; after an error or a signal (a code other than 0) without the
    interpreter's teardown. An error raised while pyarrow's streaming CSV reader still read ahead
    made the teardown abort now and then (SIGABRT, "terminate called without an active
    exception", issue 18 item 4) after the right line was printed: an Arrow thread was still at
    work when C++'s static objects were destroyed. By the time a code is returned every file
    torchwork wrote is complete or removed; the logs and the two streams are flushed here."""
    if code == 0:
        sys.exit(0)
    import contextlib
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing more to say there
            stream.flush()
    os._exit(code)


def run() -> Any:  # pragma: no cover - console script shim
    without_working_directory()
    exit_with(main())
