"""The ``torchwork`` command: a thin layer that parses arguments and calls the library.

Heavy modules (torch, pandas, matplotlib) are imported inside the commands that need
them, so ``torchwork --help`` answers at once. Errors that torchwork understands, and
bad command-line usage, print one line on stderr and exit non-zero: 2 for bad input.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from torchwork import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class InOrder(click.Group):
    """Commands listed in the order of the workflow, not alphabetically."""

    ORDER = ("demo", "train", "predict", "evaluate", "inspect", "resume", "export", "bench")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands, key=lambda name: (*self.ORDER, name).index(name))


@click.group(cls=InOrder, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="torchwork")
def cli() -> None:
    """torchwork: the whole PyTorch workflow (data, model, loss and optimizer, training and
    testing loops, prediction, evaluation, saving and loading) in one tool."""


@cli.command()
@click.option("--out", default=".", show_default=True, metavar="DIR", help="Folder for models/ and plots/.")
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (cuda, then mps, then cpu), cpu, cuda or cuda:N.",
)
def demo(out: str, device: str) -> None:
    """Run the tutorial "PyTorch Workflow Fundamentals", sections 1 to 6.

    Prints what the tutorial prints and writes DIR/models/01_pytorch_workflow_model_{0,1}.pth
    and DIR/plots/*.png. On the CPU the numbers are the tutorial's exactly.
    """
    from torchwork.demo import run_demo

    run_demo(out, device)


@cli.command()
@click.argument("path", metavar="FILE_OR_RUN_DIR")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def inspect(path: str, as_json: bool) -> None:
    """Show what a model file or a run folder holds.

    For a .pth/.pt/.safetensors file: each tensor's name, shape, dtype and values, and the
    device it was saved from. The file is loaded without running any code from it
    (weights_only=True, after a scan of its pickle) and onto the CPU, so a file saved on a
    GPU inspects on any machine. For a run folder: its manifest is checked first, then its
    model, columns, data, metrics and weights are shown.
    """
    from pathlib import Path

    if Path(path).is_dir():
        from torchwork.report.inspect import format_run_summary
        from torchwork.runs.folder import read_run_summary

        summary = read_run_summary(path)
        click.echo(json.dumps(summary, indent=2) if as_json else format_run_summary(summary))
        return
    from torchwork.report.inspect import describe_weights, format_description

    desc = describe_weights(path)
    click.echo(json.dumps(desc, indent=2) if as_json else format_description(desc))


def _train_options(f: Any) -> Any:
    """The training flags; defaults (and their help) come from TrainConfig, flags override --config."""
    from torchwork.runs.config import help_of

    options = [
        click.option(
            "--config",
            "config_file",
            metavar="FILE",
            help="TOML or YAML file of options (flags override it).",
        ),
        click.option("--target", metavar="COL", help=help_of("target")),
        click.option("--features", metavar="A,B,...", help=help_of("features")),
        click.option("--drop-missing", is_flag=True, default=None, help=help_of("drop_missing")),
        click.option("--val", type=float, metavar="FRACTION", help=help_of("val")),
        click.option("--test", type=float, metavar="FRACTION", help=help_of("test")),
        click.option("--shuffle/--no-shuffle", default=None, help=help_of("shuffle")),
        click.option("--standardize/--no-standardize", default=None, help=help_of("standardize")),
        click.option("--model", metavar="NAME", help=help_of("model")),
        click.option("--hidden", metavar="N,N,...", help=help_of("hidden")),
        click.option("--activation", metavar="NAME", help=help_of("activation")),
        click.option("--dropout", type=float, metavar="P", help=help_of("dropout")),
        click.option("--loss", metavar="NAME", help=help_of("loss")),
        click.option("--optimizer", metavar="NAME", help=help_of("optimizer")),
        click.option("--lr", type=float, help=help_of("lr")),
        click.option("--weight-decay", type=float, help=help_of("weight_decay")),
        click.option("--epochs", type=int, help=help_of("epochs")),
        click.option("--batch-size", type=int, help=help_of("batch_size")),
        click.option("--early-stopping", type=int, metavar="PATIENCE", help=help_of("early_stopping")),
        click.option("--scheduler", metavar="NAME", help=help_of("scheduler")),
        click.option("--clip-grad", type=float, metavar="NORM", help=help_of("clip_grad")),
        click.option("--seed", type=int, help=help_of("seed")),
        click.option("--device", help=help_of("device")),
        click.option("--precision", metavar="P", help=help_of("precision")),
        click.option("--compile/--no-compile", default=None, help=help_of("compile")),
        click.option("--tensorboard/--no-tensorboard", default=None, help=help_of("tensorboard")),
        click.option("--checkpoint-every", type=int, metavar="EPOCHS", help=help_of("checkpoint_every")),
        click.option("--checkpoint-every-steps", type=int, metavar="STEPS", help=help_of("checkpoint_every_steps")),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.command()
@click.argument("data", required=False, metavar="DATA")
@click.option("--out", metavar="RUN_DIR", help="Run folder to create [default: runs/<data>-<time>].")
@click.option("--overwrite", is_flag=True, help="Replace RUN_DIR (or an unfinished RUN_DIR.partial).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@_train_options
def train(
    data: str | None, out: str | None, overwrite: bool, quiet: bool, config_file: str | None, **flags: Any
) -> None:
    """Train a model on DATA (CSV, Parquet, .npy or .npz) and write a run folder.

    With only --target, an MLP is trained on the standardized features with Adam and early
    stopping on a validation split (best weights restored). The run folder holds the model
    (safetensors + JSON), history.csv, metrics.json (with a closed-form least-squares
    baseline on the same split), plots and report.html.
    """
    from torchwork.runs.config import load_config
    from torchwork.runs.lifecycle import train_run

    if data is not None:
        flags["data"] = data
    config = load_config(config_file, flags)
    if out is None:
        import time
        from pathlib import Path

        stem = Path(config.data).stem if config.data else "run"
        out = str(Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    run = train_run(config, out=out, overwrite=overwrite, verbose=not quiet)
    _print_summary(run)


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.option("--trust-model-code", is_flag=True, help="Allow importing the run's own model class.")
def resume(run_dir: str, quiet: bool, trust_model_code: bool) -> None:
    """Continue an interrupted or killed run (RUN_DIR.partial) from its last checkpoint.

    The data file must be unchanged (its SHA-256 is checked). The result is bit-identical to
    a run that was never interrupted (same device).
    """
    from torchwork.runs.lifecycle import resume_run

    _print_summary(resume_run(run_dir, trust_model_code=trust_model_code, verbose=not quiet))


def _print_summary(run: Any) -> None:
    from torchwork.report.html import verdict

    test = run.metrics["model"].get("test") or run.metrics["model"].get("val") or run.metrics["model"]["train"]
    click.echo(f"run:     {run.path}")
    click.echo(f"epochs:  {run.info['epochs_run']}" + (" (stopped early)" if run.info["stopped_early"] else ""))
    click.echo(f"metrics: MAE {test['mae']:.6g} | RMSE {test['rmse']:.6g} | R² {test['r2']:.6g}")
    click.echo(f"verdict: {verdict(run.metrics)[0]}")
    click.echo(f"report:  {run.path / 'report.html'}")


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option(
    "--format", "fmt", type=click.Choice(["onnx", "exported", "torchscript"]), default="onnx", show_default=True,
    help="onnx (runs with onnxruntime), exported (torch.export .pt2) or torchscript (deprecated by PyTorch).",
)  # fmt: skip
@click.option("--out", metavar="FILE", help="Where to write it [default: RUN_DIR.onnx, .pt2 or .pt].")
@click.option("--data", metavar="DATA", help="Rows to check the export on [default: the run's validation rows].")
@click.option("--trust-model-code", is_flag=True, help="Allow importing the run's own model class.")
def export(run_dir: str, fmt: str, out: str | None, data: str | None, trust_model_code: bool) -> None:
    """Write RUN_DIR's model as a file that runs without torchwork, scalers included.

    It takes raw feature rows (float32, in model.json's feature order) and returns predictions
    in the target's units. Before reporting success, the file is loaded back (ONNX through
    onnxruntime) and its predictions are compared with torchwork's.
    """
    from pathlib import Path

    from torchwork.runs.export import FORMATS, check_rows, export_run
    from torchwork.runs.folder import load_run

    run = load_run(run_dir, trust_model_code=trust_model_code)
    target = Path(out) if out else Path(run_dir.rstrip("/") + FORMATS[fmt])
    result = export_run(run, fmt, target, check_rows(run, data))
    click.echo(
        f"exported {run_dir} as {fmt} to {target}: its predictions match torchwork's on "
        f"{result['rows_checked']} rows (max difference {result['max_abs_difference']:.3g})"
    )


@cli.command()
@click.option("--quick", is_flag=True, help="5 rounds instead of 9; slow references time 200k rows, not 1M.")
@click.option("--json", "json_path", metavar="FILE", help="Also write the full results as JSON.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--no-peers", is_flag=True, help="Leave out PyTorch Lightning, skorch and Keras even if installed.")
def bench(quick: bool, json_path: str | None, device: str, no_peers: bool) -> None:
    """Time torchwork against hand-written loops, DataLoader pipelines and peers; print the table.

    Cases: the tutorial (1000 epochs) and in-memory tabular data (1M x 32, linear and MLP,
    Adam). Each case runs in one process against its references on the same data.
    """
    from torchwork.bench import format_table, run
    from torchwork.files.atomic import atomic_write

    result = run(quick=quick, device=device, with_peers=not no_peers, echo=lambda s: click.echo(s, err=True))
    click.echo(format_table(result))
    if json_path:
        atomic_write(json_path, json.dumps(result, indent=2) + "\n")


def _run_options(f: Any) -> Any:
    f = click.option("--trust-model-code", is_flag=True, help="Allow importing the run's own model class.")(f)
    f = click.option("--drop-missing", is_flag=True, help="Skip rows with missing values (and say how many).")(f)
    return f


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.argument("data", metavar="DATA")
@click.option("--out", metavar="PRED.csv", help="Write here (.csv or .parquet) [default: CSV on stdout].")
@click.option("--column", metavar="NAME", help="Name of the prediction column [default: prediction].")
@click.option("--allow-extra-columns", is_flag=True, help="Keep columns the model does not use (they pass through).")
@_run_options
def predict(
    run_dir: str, data: str, out: str | None, column: str | None, allow_extra_columns: bool, drop_missing: bool,
    trust_model_code: bool,
) -> None:  # fmt: skip
    """Predict for the rows of DATA with the model in RUN_DIR: the rows plus a prediction column.

    DATA must have the model's feature columns (in any order); a missing or unexpected
    column is an error that names it. The target column may be present.
    """
    from torchwork.files.tables import write_table
    from torchwork.runs.folder import load_run

    run = load_run(run_dir, trust_model_code=trust_model_code)
    frame, dropped = run.predict_table(data, column=column, drop_missing=drop_missing, allow_extra=allow_extra_columns)
    if dropped:
        click.echo(f"{dropped} rows have a missing value: their prediction is empty", err=True)
    if out is None:
        click.echo(frame.to_csv(index=False), nl=False)
    else:
        write_table(frame, out)
        click.echo(f"wrote {len(frame)} predictions to {out}", err=True)


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.argument("data", metavar="DATA")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@_run_options
def evaluate(run_dir: str, data: str, as_json: bool, drop_missing: bool, trust_model_code: bool) -> None:
    """Metrics (MAE, MSE, RMSE, R²) of RUN_DIR's model, and of its least-squares line, on labelled DATA."""
    from torchwork.runs.folder import load_run

    run = load_run(run_dir, trust_model_code=trust_model_code)
    result = run.evaluate(data, drop_missing=drop_missing)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"rows: {result['rows']}" + (f" ({result['dropped']} dropped)" if result["dropped"] else ""))
    click.echo(f"{'':<15} {'MAE':>12} {'MSE':>12} {'RMSE':>12} {'R²':>12}")
    for name in ("model", "least_squares"):
        if name in result:
            m = result[name]
            click.echo(f"{name:<15} {m['mae']:>12.6g} {m['mse']:>12.6g} {m['rmse']:>12.6g} {m['r2']:>12.6g}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning expected errors into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="torchwork", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("torchwork: aborted", err=True)
        return 130
    except click.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"torchwork: error: {_one_line(exc.format_message()).rstrip('.')}{hint}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("torchwork: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        from torchwork.core.errors import TorchworkError

        if isinstance(exc, TorchworkError):
            click.echo(f"torchwork: error: {_one_line(str(exc))}", err=True)
            return exc.exit_code
        raise
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run() -> Any:  # pragma: no cover - console script shim
    sys.exit(main())
