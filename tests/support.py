"""What several test modules use: the references written out in plain PyTorch, and the CLI runners.

Tests import from here (a helper module), never from each other; fixtures live in
``conftest.py``.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
TUTORIAL_FIXTURES = FIXTURES / "tutorial"
EXAMPLES = ROOT / "examples"
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

# ``python -c PEAK_PROBE ARGS`` runs ``torchwork ARGS`` and writes the process's own peak RSS in kB
# (VmHWM; ru_maxrss from wait4 starts from the forking pytest's) to $TORCHWORK_TEST_PEAK as it ends:
# after its last line, or in os._exit, which the command calls after an error (cli.exit_with).
PEAK_PROBE = """
import os, runpy, sys
def write_peak():
    with open('/proc/self/status') as f:
        peak = next(line.split()[1] for line in f if line.startswith('VmHWM'))
    with open(os.environ['TORCHWORK_TEST_PEAK'], 'w') as f:
        f.write(peak)
real_exit = os._exit
def exit_after_peak(code):
    write_peak()
    real_exit(code)
os._exit = exit_after_peak
sys.argv = ['torchwork', *sys.argv[1:]]
try:
    runpy.run_module('torchwork', run_name='__main__', alter_sys=True)
finally:
    write_peak()
"""


# ----------------------------------------------------------------- the CLI
def run_cli(
    *args: str, cwd: str | os.PathLike[str] | None = None, timeout: float = 600, **kw
) -> subprocess.CompletedProcess:
    """``python -m torchwork ARGS`` in a new process with no stdin, as a user (or CI) would run it."""
    env = {**ENV, "PYTHONUNBUFFERED": "1"}
    env.update(kw.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "torchwork", *args],
        cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env, **kw,
    )  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess:
    """``torchwork ARGS`` in this process (fast: torch is already imported); same result shape."""
    from torchwork.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["torchwork", *args], code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    """The CLI failed the way bad input must: exit ``code``, one line on stderr, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("torchwork: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ------------------------------------------------------------ references
def regression_data(n: int = 256, d: int = 3, seed: int = 0, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    w = torch.randn(d, 1, generator=g)
    y = X @ w + 0.5 + noise * torch.randn(n, 1, generator=g)
    return X, y


def tutorial_data() -> tuple[torch.Tensor, ...]:
    """The tutorial's line and its 40/10 split, written out."""
    X = torch.arange(0, 1, 0.02).unsqueeze(1)
    y = 0.7 * X + 0.3
    return X[:40], y[:40], X[40:], y[40:]


def documented_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The batch order torchwork documents for 0-based ``epoch``, derived here from the recipe.

    A 63-bit seed mixed from ``(seed, epoch)`` by NumPy's ``SeedSequence``, then
    ``torch.randperm`` with a generator seeded with it.
    """
    state = np.random.SeedSequence([seed % 2**63, epoch]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))
    return torch.randperm(n, generator=generator)


def assert_same_params(a: nn.Module, b: nn.Module) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), (name, p, q)


def plain_loop(model, X, y, Xv, yv, make_optimizer, loss_fn, epochs, batch_size=None, seed=0, clip=None,
               make_scheduler=None):  # fmt: skip
    """The tutorial's loop, written out, over the documented batch order.

    Returns the per-epoch training losses (mean over rows) and validation losses.
    """
    optimizer = make_optimizer(model.parameters())
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    train_losses, val_losses = [], []
    n = len(X)
    for epoch in range(epochs):
        model.train()
        if batch_size is None:
            batches = [(X, y)]
        else:
            order = documented_order(n, seed, epoch).to(X.device)
            batches = [(X[order[i : i + batch_size]], y[order[i : i + batch_size]]) for i in range(0, n, batch_size)]
        losses = []
        for xb, yb in batches:
            y_pred = model(xb)
            loss = loss_fn(y_pred, yb)
            optimizer.zero_grad()
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            losses.append(loss.item() * len(xb))
        train_losses.append(sum(losses) / n)
        if scheduler:
            scheduler.step()
        model.eval()
        with torch.inference_mode():
            val_losses.append(loss_fn(model(Xv), yv).item())
    return train_losses, val_losses


class Killed(Exception):
    pass


def KillAfter(path, every_epochs=None, every_steps=None, extra=None, final=False, *, at_step=None, at_epoch=None):
    """A Checkpointer that checkpoints as asked, then stops the fit dead after step (or epoch) N's checkpoint."""
    from torchwork.files.checkpoint import Checkpointer

    class _KillAfter(Checkpointer):
        def on_step_end(self, fit):
            super().on_step_end(fit)
            if fit.state.step == at_step:
                self.close()  # the write in flight lands, as it would before a SIGKILL here
                raise Killed

        def on_epoch_end(self, fit, logs):
            super().on_epoch_end(fit, logs)
            if fit.state.epoch == at_epoch:
                self.close()
                raise Killed

    return _KillAfter(path, every_epochs, every_steps, extra, final)


def refuse_network(monkeypatch) -> None:
    """Any connection or name lookup fails the test (signing and verifying stay on this machine)."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network used: {args[1:]!r}")

    for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "getaddrinfo"),
                        (socket, "create_connection")):  # fmt: skip
        monkeypatch.setattr(owner, name, refuse)


def write_keys(folder: Path, name: str, password: bytes | None = None) -> tuple[Path, Path]:
    """An EC P-256 key pair as PEM files: (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    crypt = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, crypt))
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public
