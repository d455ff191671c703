"""Everything torchwork checks and times on a GPU, in one run (for a lent GPU machine).

    PYTHONPATH=src:. python benchmarks/gpu_check.py OUT_DIR

1. the CUDA tests: the CUDA-graph engine against a plain loop on the GPU (float tolerance),
   the tutorial on the GPU, a model that cannot be captured falling back with a note;
2. ``torchwork demo --device cuda`` (section 6 on the GPU);
3. bf16-mixed and ``torch.compile`` switches on the GPU;
4. ``python -m benchmarks.speed --quick --device cuda`` (writes OUT_DIR/bench_gpu.json and .md).

Logs go to OUT_DIR; a short summary is printed last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, cmd: list[str], out: Path, timeout: int) -> tuple[bool, float, str]:
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        ok, text = done.returncode == 0, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        ok, text = False, f"TIMEOUT after {timeout}s\n{exc.stdout or ''}{exc.stderr or ''}"
    seconds = time.perf_counter() - start
    (out / f"{name}.log").write_text(text)
    tail = "\n".join(text.strip().splitlines()[-6:])
    print(f"== {name}: {'ok' if ok else 'FAILED'} in {seconds:.0f}s\n{tail}\n", flush=True)
    return ok, seconds, text


SWITCHES = """
import torch, time
from torchwork.training.trainer import Trainer
from torchwork.models.mlp import MLP
from benchmarks.speed.cases import tabular_data
X, y = tabular_data(200_000)
for options in ({"precision": "bf16-mixed"}, {"compile": True}):
    torch.manual_seed(0)
    model = MLP(32, hidden=(64, 64))
    t = Trainer(loss="mse", optimizer="adam", lr=1e-3, epochs=3, batch_size=4096, seed=0, device="cuda", **options)
    start = time.perf_counter()
    h = t.fit(model, (X, y), (X[:4096], y[:4096]))
    torch.cuda.synchronize()
    print(options, "val_loss", [round(v, 4) for v in h["val_loss"]], "engine", t.last_fit.engine,
          "notes", t.last_fit.notes, f"{time.perf_counter() - start:.1f}s")
    assert h["val_loss"][-1] < h["val_loss"][0]
"""


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-out")
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    import torch

    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}", flush=True)
    results = {}
    results["cuda tests"] = run(
        "tests", [py, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o", "filterwarnings=default",
                  "tests/training/test_cuda_graphs.py", "tests/training/test_loop.py"], out, 180,
    )  # fmt: skip
    results["demo --device cuda"] = run(
        "demo", [py, "-m", "torchwork", "demo", "--device", "cuda", "--out", str(out / "demo")], out, 90
    )
    results["bench"] = run(
        "bench", [py, "-m", "benchmarks.speed", "--quick", "--device", "cuda", "--json", str(out / "bench_gpu.json")],
        out, 300,
    )  # fmt: skip
    results["bf16 + compile"] = run("switches", [py, "-c", SWITCHES], out, 150)
    if results["bench"][0]:
        (out / "bench_gpu.md").write_text(results["bench"][2].split("Device:", 1)[-1])
    demo = results["demo --device cuda"][2]
    print(
        "\n".join(line for line in demo.splitlines() if line.startswith(("Using device", "Epoch: 0 |", "Epoch: 900")))
    )
    if results["bench"][0]:
        data = json.loads((out / "bench_gpu.json").read_text())
        for t in data["targets"]:
            print(f"{t['target']}: {t['measured']} (goal {t['goal']}) {'met' if t['met'] else 'MISSED'}")
    print("SUMMARY " + " | ".join(f"{k}: {'ok' if v[0] else 'FAILED'}" for k, v in results.items()))
    return 0 if all(v[0] for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
