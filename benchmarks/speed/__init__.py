"""``python -m benchmarks.speed``: torchwork against the usual ways of training, in one process, same data.

Two cases, each timed against its references in the same process, runs interleaved and
the best of the rounds kept (the least disturbed by whatever else the machine does):

- the tutorial: 50 points, 1000 epochs, the testing loop every epoch, history every 10;
  per-epoch time against the tutorial's hand-written loop (and, on a GPU, the same loop
  captured by hand in a CUDA graph);
- in-memory tabular data (1M x 32, Adam, batch 1024 on the CPU and 4096 on a GPU), a
  linear model and an MLP 32-64-64-1: samples per second against
  ``DataLoader(TensorDataset)`` and a hand-written index-slicing loop (and a hand CUDA-graph
  loop on a GPU);
- data on disk (:mod:`benchmarks.speed.bigdata`): streaming from Parquet against in memory,
  the peak memory of a streamed epoch at two sizes, and ``predict`` on a CSV against pyarrow
  reading and writing it;
- two processes (DDP over gloo) against one (:mod:`benchmarks.speed.processes`).

PyTorch Lightning, skorch and Keras 3 join when installed. Peak memory of the tabular
epoch is measured in a fresh process. Targets are checked and reported, misses included.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.speed import cases
from benchmarks.speed.children import child_result

TUTORIAL_EPOCHS = 1000


def machine(device: torch.device) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": f"{cpu}, {os.cpu_count()} cores", "torch threads": str(torch.get_num_threads())}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info["python"] = platform.python_version()
    info["torch"] = torch.__version__
    return info


def _scratch() -> str:
    """A folder for the benchmark's checkpoints, removed when the process exits."""
    folder = tempfile.TemporaryDirectory(prefix="torchwork-bench-")
    _SCRATCH.append(folder)
    return folder.name


_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []


def _rounds(runners: dict[str, Callable[[], Any]], repeats: int, echo: Callable[[str], Any]) -> dict[str, Any]:
    """Run each runner ``repeats`` times, interleaved; keep every result."""
    results: dict[str, list[Any]] = {name: [] for name in runners}
    for r in range(repeats):
        for name, run in runners.items():
            results[name].append(run())
        echo(f"  round {r + 1}/{repeats} done")
    return results


def tutorial_case(
    device: torch.device,
    repeats: int,
    peers: dict[str, bool],
    echo: Callable[[str], Any],
    epochs: int = TUTORIAL_EPOCHS,
) -> dict[str, Any]:
    from benchmarks.speed import peers as peer_runs

    tmp = _scratch()
    runners: dict[str, Callable[[], float]] = {
        "hand loop (the tutorial's)": lambda: cases.tutorial_hand_loop(device, epochs),
        "torchwork": lambda: cases.steady(lambda e: cases.tutorial_torchwork(device, e), epochs, device),
        "torchwork + progress + checkpoints": lambda: cases.steady(
            lambda e: cases.tutorial_torchwork(device, e, cases.overhead_callbacks(tmp, e, every_epochs=100)),
            epochs,
            device,
        ),
    }
    if device.type == "cuda":
        runners["hand loop in a CUDA graph"] = lambda: cases.tutorial_cuda_graph(device, epochs)
    for name, ok in peers.items():
        if ok:
            runners[name] = functools.partial(peer_runs.TUTORIAL[name], device, epochs)
    cases.tutorial_torchwork(device, epochs=20)  # warm-up: imports, kernels
    times = _rounds(runners, repeats, echo)
    rows = {name: min(t) / epochs * 1e6 for name, t in times.items()}
    return {"unit": "µs per epoch", "lower_is_better": True, "rows": rows}


def tabular_case(kind: str, device: torch.device, rows_n: int, repeats: int, peers: dict[str, bool],
                 slow_rows: int, echo: Callable[[str], Any]) -> dict[str, Any]:  # fmt: skip
    from benchmarks.speed import peers as peer_runs

    batch = 4096 if device.type == "cuda" else 1024
    X, y = cases.tabular_data(rows_n)
    tmp = _scratch()
    runners: dict[str, Callable[[], tuple[float, int]]] = {
        "DataLoader(TensorDataset)": lambda: cases.tabular_dataloader(X, y, kind, batch, device, slow_rows),
        "hand index-slicing loop": lambda: cases.tabular_index_loop(X, y, kind, batch, device),
        "torchwork": lambda: (
            cases.steady(lambda e: cases.tabular_torchwork(X, y, kind, batch, device, epochs=e)[0], 1, device),
            len(X),
        ),
        "torchwork + progress + checkpoints": lambda: (
            cases.steady(
                lambda e: cases.tabular_torchwork(
                    X, y, kind, batch, device, cases.overhead_callbacks(tmp, e, every_steps=500), epochs=e
                )[0],
                1,
                device,
            ),
            len(X),
        ),
    }
    if device.type == "cuda":
        runners["hand loop in a CUDA graph"] = lambda: cases.tabular_cuda_graph(X, y, kind, batch, device)
    for name, ok in peers.items():
        if ok:
            runners[name] = functools.partial(peer_runs.TABULAR[name], X, y, kind, batch, device, slow_rows)
    cases.tabular_torchwork(X[: batch * 20], y[: batch * 20], kind, batch, device)  # warm-up
    results = _rounds(runners, repeats, echo)
    rows = {name: max(n / t for t, n in r) for name, r in results.items()}
    return {"unit": "samples/s", "lower_is_better": False, "rows": rows, "batch": batch, "rows_n": rows_n}


def memory_case(kind: str, device: torch.device, rows_n: int) -> dict[str, Any]:
    """Peak memory at ``rows_n`` and at half as many rows, each in a fresh process.

    The slope between the two (bytes of memory per byte of data) is what "at most 2x the
    data plus a constant" bounds; the intercept is the constant.
    """
    batch = 4096 if device.type == "cuda" else 1024
    points = []
    for rows in (rows_n // 2, rows_n):
        command = [sys.executable, "-m", "benchmarks.speed.memory", kind, str(rows), str(batch), str(device)]
        points.append(child_result(command, timeout=600))
    (d1, p1), (d2, p2) = ((p["data_bytes"], p["peak_bytes"]) for p in points)
    slope = (p2 - p1) / (d2 - d1)
    return {**points[-1], "slope": slope, "constant_bytes": p2 - slope * d2}


def processes_case(kind: str, rows_n: int, batch: int = 1024, n: int = 2) -> dict[str, Any]:
    """``n`` processes (DDP over gloo, one thread each, batch ``batch`` each) against one process
    (every core, batch ``n * batch``: the same steps), each timed in its own launch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
               "-m", "benchmarks.speed.processes", kind, str(rows_n), str(batch)]  # fmt: skip
    many = child_result(command, timeout=900, env=env)
    one = child_result([sys.executable, "-m", "benchmarks.speed.processes", kind, str(rows_n), str(n * batch)], 900)
    rows = {
        f"1 process, batch {n * batch}": one["samples_per_s"],
        f"{n} processes, batch {batch} each": many["samples_per_s"],
    }
    return {
        "unit": "samples/s",
        "lower_is_better": False,
        "rows": rows,
        "rows_n": rows_n,
        "reference": next(iter(rows)),
    }


def run(
    quick: bool = True,
    device: str = "cpu",
    with_peers: bool = True,
    echo: Callable[[str], Any] = print,
    rows: int = 1_000_000,
    tutorial_epochs: int = TUTORIAL_EPOCHS,
    repeats: int | None = None,
    memory: bool = True,
    processes: bool = True,
    big_data: bool = True,
) -> dict[str, Any]:
    """Every case; ``rows``, ``tutorial_epochs``, ``repeats`` and ``memory=False`` shrink it for a smoke test."""
    from benchmarks.speed.peers import available
    from torchwork.core.runtime import resolve_device

    dev = resolve_device(device)
    repeats = repeats or (5 if quick else 9)
    peers = available() if with_peers else {}
    echo(f"peers: {', '.join(n for n, ok in peers.items() if ok) or 'none installed'}")
    result: dict[str, Any] = {"machine": machine(dev), "device": str(dev), "quick": quick, "cases": {}}
    echo(f"tutorial ({tutorial_epochs} epochs)")
    result["cases"]["tutorial"] = tutorial_case(dev, repeats, peers, echo, tutorial_epochs)
    rows_n = rows
    slow_rows = min(rows, 200_000) if quick else rows
    for kind in ("linear", "mlp"):
        echo(f"tabular {kind} ({rows_n} x 32)")
        result["cases"][f"tabular {kind}"] = tabular_case(kind, dev, rows_n, repeats, peers, slow_rows, echo)
        if memory:
            result["cases"][f"tabular {kind}"]["memory"] = memory_case(kind, dev, rows_n)
    if big_data and dev.type == "cpu":
        from benchmarks.speed import bigdata

        echo(f"streaming from Parquet against in memory (mlp, {rows_n // 2} x 32)")
        case = bigdata.streaming_case("mlp", rows_n // 2, max(2, repeats // 2))
        if memory:
            echo("peak memory of a streamed epoch at two sizes 8x apart")
            case["stream_memory"] = bigdata.memory_case(rows_n)
        result["cases"]["streaming (mlp)"] = case
        echo(f"predict on a CSV file ({rows_n} x 8)")
        result["cases"]["predict (csv)"] = bigdata.predict_case(rows_n, max(2, repeats // 2))
    if processes and dev.type == "cpu" and torch.distributed.is_available():
        echo(f"processes: 2 against 1 (mlp, {rows_n // 4} x 32)")
        result["cases"]["processes (mlp)"] = processes_case("mlp", rows_n // 4)
    result["targets"] = targets(result)
    return result


def _ratio(case: dict[str, Any], a: str, b: str) -> float | None:
    rows = case["rows"]
    if a not in rows or b not in rows:
        return None
    return rows[a] / rows[b]


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, as ratios measured in this run."""
    out = []
    cuda = result["device"].startswith("cuda")
    tut = result["cases"]["tutorial"]

    def add(name: str, value: float | None, goal: str, ok: bool | None) -> None:
        out.append({"target": name, "measured": value, "goal": goal, "met": ok})

    r = _ratio(tut, "torchwork", "hand loop (the tutorial's)")
    add("tutorial: torchwork time / hand loop", r, "<= 1.0 (aim 0.5)", r is not None and r <= 1.0)
    r = _ratio(tut, "torchwork + progress + checkpoints", "torchwork")
    add("tutorial: with progress + checkpoints every 100 epochs / without", r, "<= 1.05", r is not None and r <= 1.05)
    if cuda:
        us = tut["rows"]["torchwork"]
        add("tutorial on GPU: µs per epoch", us, "<= 60", us <= 60)
    for kind, dl_goal in (("linear", 10.0), ("mlp", 5.0)):
        case = result["cases"][f"tabular {kind}"]
        r = _ratio(case, "torchwork", "hand index-slicing loop")
        add(
            f"tabular {kind}: torchwork / hand index loop (samples/s)",
            r,
            ">= 1.0 (aim 1.3)",
            r is not None and r >= 1.0,
        )
        r = _ratio(case, "torchwork", "DataLoader(TensorDataset)")
        add(f"tabular {kind}: torchwork / DataLoader", r, f">= {dl_goal:g}", r is not None and r >= dl_goal)
        r = _ratio(case, "torchwork + progress + checkpoints", "torchwork")
        add(f"tabular {kind}: with progress + checkpoints / without", r, ">= 0.95", r is not None and r >= 0.95)
        if cuda:
            r = _ratio(case, "torchwork", "hand loop in a CUDA graph")
            add(f"tabular {kind} on GPU: torchwork / hand CUDA-graph loop", r, ">= 0.75", r is not None and r >= 0.75)
        if "memory" in case:
            mem = case["memory"]
            add(f"tabular {kind}: peak memory per byte of data (slope)", mem["slope"], "<= 2", mem["slope"] <= 2.0)
    if "streaming (mlp)" in result["cases"]:
        case = result["cases"]["streaming (mlp)"]
        r = _ratio(case, "streamed from Parquet", "in memory")
        add("streaming / in memory (MLP, samples/s)", r, ">= 0.5", r is not None and r >= 0.5)
        if "stream_memory" in case:
            slope = case["stream_memory"]["slope"]
            add("streamed epoch: peak memory per byte of data (slope, 8x sizes)", slope, "near 0 (<= 0.1)",
                abs(slope) <= 0.1)  # fmt: skip
    if "predict (csv)" in result["cases"]:
        r = _ratio(result["cases"]["predict (csv)"], "torchwork predict", "pyarrow read + write")
        add("predict on a CSV / pyarrow read + write (time)", r, "<= 1.2", r is not None and r <= 1.2)
    if "processes (mlp)" in result["cases"]:
        rows = list(result["cases"]["processes (mlp)"]["rows"].values())
        add("2 processes / 1 process on this CPU (samples/s)", rows[1] / rows[0], "reported", None)
    return out


def format_table(result: dict[str, Any]) -> str:
    lines = [f"Device: {result['device']}", *(f"- {k}: {v}" for k, v in result["machine"].items()), ""]
    for name, case in result["cases"].items():
        unit, rows = case["unit"], case["rows"]
        ref = case.get("reference") or (
            "hand loop (the tutorial's)" if name == "tutorial" else "hand index-slicing loop"
        )
        mine = "torchwork" if "torchwork" in rows else ref
        lines += [f"### {name} ({unit})", "", f"| run | {unit} | vs {ref} | vs torchwork |", "|---|---:|---:|---:|"]
        for run_name, value in rows.items():
            if case["lower_is_better"]:
                vs_ref, vs_tw = rows[ref] / value, rows[mine] / value
                shown = f"{value:,.1f}"
            else:
                vs_ref, vs_tw = value / rows[ref], value / rows[mine]
                shown = f"{value:,.0f}"
            lines.append(f"| {run_name} | {shown} | {vs_ref:.2f}x | {vs_tw:.2f}x |")
        if "stream_memory" in case:
            points = case["stream_memory"]["points"]
            lines.append("")
            each = [
                f"{p['peak_bytes'] / 2**20:,.0f} MiB for {p['data_bytes'] / 2**20:,.0f} MiB of data" for p in points
            ]
            slope = case["stream_memory"]["slope"]
            lines.append(
                f"Peak memory of a streamed epoch: {', '.join(each)}; slope {slope:.3f} bytes per byte of data."
            )
        if "memory" in case:
            m = case["memory"]
            lines.append("")
            lines.append(
                f"Peak memory of a torchwork epoch: {m['peak_bytes'] / 2**20:,.0f} MiB for "
                f"{m['data_bytes'] / 2**20:,.0f} MiB of data ({m['ratio']:.2f}x); measured at two sizes: "
                f"{m['slope']:.2f} bytes per byte of data + {m['constant_bytes'] / 2**20:,.0f} MiB."
            )
        lines.append("")
    lines += ["### targets", "", "| target | measured | goal | met |", "|---|---:|---|---|"]
    for t in result["targets"]:
        value = "—" if t["measured"] is None else f"{t['measured']:.2f}"
        met = "—" if t["met"] is None else "yes" if t["met"] else "NO"
        lines.append(f"| {t['target']} | {value} | {t['goal']} | {met} |")
    lines.append("")
    lines.append("In the 'vs' columns, above 1.00x means that row's run is faster than the column's run.")
    if result["device"].startswith("cuda"):
        lines.append("On the GPU, torchwork's rows are steady state (set-up and graph capture timed apart), as")
        lines.append("the hand CUDA-graph loop's are (its capture is outside its timing).")
    return "\n".join(lines)
