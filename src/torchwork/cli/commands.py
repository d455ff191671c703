"""``torchwork demo``, ``predict``, ``evaluate``, ``inspect``, ``export``, ``sign`` and ``bench``."""

from __future__ import annotations

import json
from typing import Any

import click

from torchwork.cli.app import cli
from torchwork.cli.options import flag, option

TRUST = "Allow importing the run's own model class (it runs that module's code)."
VERIFY = "Refuse the run unless it is signed with the private key of this public key (PEM)."


def _load(run_dir: str, trust_model_code: bool | None, verify_key: str | None, data: str | None = None) -> Any:
    from torchwork.runs.folder import load_run

    return load_run(run_dir, trust_model_code=bool(trust_model_code), verify_key=verify_key, data_hint=data)


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
    from torchwork.files.tables import check_output, write_table

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
        click.echo(f"note: {n} row{'' if n == 1 else 's'} with a value of {column!r} never seen in training", err=True)


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
        click.echo(json.dumps(summary, indent=2) if as_json else format_run_summary(summary))
        return
    from torchwork.report.inspect import describe_weights, format_description

    desc = describe_weights(path)
    click.echo(json.dumps(desc, indent=2) if as_json else format_description(desc))


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@option(
    "--format", "fmt", type=click.Choice(["onnx", "exported", "torchscript"]), default="onnx", show_default=True,
    help="onnx (runs with onnxruntime), exported (torch.export .pt2) or torchscript (deprecated by PyTorch).",
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

    It takes the encoded rows (numeric columns, then each category's code, in the order of
    RUN_DIR.vocabulary.json, written beside it) and returns predictions in the target's units,
    or a classifier's class probabilities. Before reporting success, the file is loaded back
    (ONNX through onnxruntime) and its outputs are compared with torchwork's.
    """
    from pathlib import Path

    from torchwork.files.tables import check_output
    from torchwork.runs.export import FORMATS, check_rows, export_run

    run = _load(run_dir, trust_model_code, verify_key)
    target = Path(out) if out else Path(run_dir.rstrip("/") + FORMATS[fmt])
    check_output(target, overwrite=bool(overwrite), inputs=[])
    result = export_run(run, fmt, target, check_rows(run, data))
    click.echo(
        f"exported {run_dir} as {fmt} to {target} (inputs described in {result['vocabulary']}): its outputs match "
        f"torchwork's on {result['rows_checked']} rows (max difference {result['max_abs_difference']:.3g})"
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
    from torchwork.files.signing import sign_folder
    from torchwork.runs.folder import complete_run_path

    password = None
    if password_env is not None:
        if password_env not in os.environ:
            raise InputError(f"--password-env {password_env}: no such environment variable")
        password = os.environ[password_env]
    folder = complete_run_path(run_dir)
    click.echo(f"signed {folder}: {sign_folder(folder, key, password=password)}")


@cli.command()
@flag("--quick", help="5 rounds instead of 9; slow references time 200k rows, not 1M.")
@option("--json", "json_path", metavar="FILE", help="Also write the full results as JSON.")
@option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@flag("--no-peers", help="Leave out PyTorch Lightning, skorch and Keras even if installed.")
def bench(quick: bool | None, json_path: str | None, device: str, no_peers: bool | None) -> None:
    """Time torchwork against hand-written loops, DataLoader pipelines and peers; print the table.

    Cases: the tutorial (1000 epochs) and in-memory tabular data (1M x 32, linear and MLP,
    Adam). Each case runs in one process against its references on the same data.
    """
    from torchwork.bench import format_table, run
    from torchwork.files.atomic import atomic_write

    result = run(quick=bool(quick), device=device, with_peers=not no_peers, echo=lambda s: click.echo(s, err=True))
    click.echo(format_table(result))
    if json_path:
        atomic_write(json_path, json.dumps(result, indent=2) + "\n")


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

    from torchwork.data.chunks import csv_batches
    from torchwork.data.readers import csv_options
    from torchwork.files.tables import TableWriter, check_output

    if Path(out).suffix.lower() not in (".parquet", ".pq"):
        raise click.UsageError(f"{out}: the output is a .parquet file")
    if not Path(data).is_file():
        raise click.UsageError(f"{data}: no such file")
    options = csv_options(encoding, delimiter, decimal)
    check_output(out, overwrite=bool(overwrite), inputs=[data])
    rows = 0

    def write(writer: TableWriter) -> None:
        nonlocal rows
        import pyarrow as pa

        batches = csv_batches(data, **options)
        try:
            for batch in batches:
                writer.write(pa.Table.from_batches([batch]))
                rows += batch.num_rows
        finally:
            batches.close()

    TableWriter.atomic(out, write, overwrite=bool(overwrite))
    click.echo(f"wrote {rows} rows to {out}", err=True)
