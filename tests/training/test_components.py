"""training.components: the named losses and the options named optimizers get on each device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchwork.training.components import L1Loss, device_options


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_l1_loss_is_nn_l1loss_bit_for_bit_value_and_gradient(dtype):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(40, 3, generator=g, dtype=dtype, requires_grad=True)
    target = torch.randn(40, 3, generator=g, dtype=dtype)
    ours, theirs = L1Loss()(pred, target), nn.L1Loss()(pred, target)
    assert torch.equal(ours, theirs)
    (grad_ours,) = torch.autograd.grad(ours, pred)
    (grad_theirs,) = torch.autograd.grad(theirs, pred)
    assert torch.equal(grad_ours, grad_theirs)


def test_the_l1_loss_leaves_every_other_case_to_nn_l1loss(monkeypatch):
    calls = []
    original = nn.L1Loss.forward
    monkeypatch.setattr(nn.L1Loss, "forward", lambda self, a, b: calls.append(1) or original(self, a, b))
    x = torch.ones(4, 1)
    L1Loss(reduction="sum")(x, x)  # another reduction
    with pytest.warns(UserWarning):  # shapes that broadcast: nn.L1Loss's own warning
        L1Loss()(x, torch.ones(4))
    L1Loss()(x.bfloat16(), x.bfloat16())  # half precision (autocast computes it in float32)
    assert len(calls) == 3
    L1Loss()(x, x)
    assert len(calls) == 3  # the plain case is computed directly


def test_named_optimizers_on_the_cpu_get_fused_adam_and_for_loop_sgd_unless_told_otherwise():
    cpu = torch.device("cpu")
    assert device_options("adam", {}, cpu, graphs=False) == {"fused": True}
    assert device_options("adamw", {}, cpu, graphs=False) == {"fused": True}
    assert device_options("adam", {"foreach": True}, cpu, graphs=False) == {"foreach": True}
    assert device_options("adam", {"fused": False}, cpu, graphs=False) == {"fused": False}
    assert device_options("sgd", {}, cpu, graphs=False) == {"foreach": False}
    assert device_options("sgd", {"fused": True}, cpu, graphs=False) == {"fused": True}
    assert device_options("rmsprop", {}, cpu, graphs=False) == {}
