"""``torchwork train`` and ``torchwork resume``."""

from __future__ import annotations

from typing import Any

import click

from torchwork.cli.app import cli
from torchwork.cli.options import flag, option, train_options

NPROC_HELP = (
    "Train in N processes on this machine (torchrun's launcher; gloo on CPU, NCCL on CUDA). "
    "For several machines, start `torchwork train` with torchrun on each."
)
RESUME_NPROC_HELP = "Resume in N processes on this machine (as many as the run was trained in)."


@cli.command()
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
    and an MLP starting from the closed-form baseline (least squares, or logistic regression)
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
    from torchwork.runs.lifecycle import resume_run

    print_summary(resume_run(run_dir, trust_model_code=bool(trust_model_code), verbose=not quiet))


def _launch(nproc: int | None) -> None:
    """With ``--nproc N`` (N > 1): this command again in N processes; exit with the job's code."""
    if nproc is not None and nproc > 1:
        from torchwork.cli.launch import launch, without_nproc

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
    click.echo(f"epochs:  {run.info['epochs_run']}" + (" (stopped early)" if run.info["stopped_early"] else ""))
    if run.metrics.get("task") == "classification":
        auc = f" | ROC-AUC {t['roc_auc']:.4g}" if t.get("roc_auc") is not None else ""
        click.echo(f"metrics: accuracy {t['accuracy']:.4g} | balanced accuracy {t['balanced_accuracy']:.4g} | "
                   f"macro-F1 {t['f1_macro']:.4g} | log loss {t['log_loss']:.4g}{auc} ({part})")  # fmt: skip
    else:
        click.echo(f"metrics: MAE {t['mae']:.6g} | RMSE {t['rmse']:.6g} | R² {t['r2']:.6g}")
    click.echo(f"verdict: {verdict(run.metrics)[0]}")
    click.echo(f"report:  {run.path / 'report.html'}")
