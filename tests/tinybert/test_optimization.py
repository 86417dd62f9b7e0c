"""BertAdam against a NumPy re-computation of the reference formula, and its schedules at known points."""
from __future__ import annotations

import io
import logging
import math

import numpy as np
import pytest
import torch

from transformer.optimization import SCHEDULES, BertAdam
from utils.errors import InputError


def numpy_warmup_linear(progress: float, warmup: float) -> float:
    return progress / warmup if progress < warmup else max((progress - 1.0) / (warmup - 1.0), 0.0)


def numpy_bert_adam(params, grads_per_step, decays, lr, warmup, t_total, b1=0.9, b2=0.999, e=1e-6, max_grad_norm=1.0):
    """original-tinybert.md §5: per-tensor clipping, no bias correction, decoupled decay, pre-increment lr."""
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for step, grads in enumerate(grads_per_step):
        lr_t = lr * numpy_warmup_linear(step / t_total, warmup)
        for i, (p, g) in enumerate(zip(params, grads)):
            norm = np.sqrt((g * g).sum())
            coef = max_grad_norm / (norm + 1e-6)
            if coef < 1:
                g = g * coef
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            update = m[i] / (np.sqrt(v[i]) + e)
            if decays[i] > 0:
                update = update + decays[i] * p
            params[i] = p - lr_t * update
    return params


def test_bert_adam_equals_the_numpy_formula():
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(4, 3)), rng.normal(size=(5,))]
    # step 0: small gradients; later ones large enough to be clipped per tensor
    grads = [[rng.normal(scale=0.05 if s == 0 else 3.0, size=p.shape) for p in start] for s in range(6)]
    params = [torch.nn.Parameter(torch.tensor(p)) for p in start]
    optimizer = BertAdam(
        [{"params": [params[0]], "weight_decay": 0.01}, {"params": [params[1]], "weight_decay": 0.0}],
        lr=0.1, warmup=0.2, t_total=10,
    )
    assert optimizer.get_lr() == [0]
    for grad_set in grads:
        for p, g in zip(params, grad_set):
            p.grad = torch.tensor(g)
        optimizer.step()
    expected = numpy_bert_adam(start, grads, decays=[0.01, 0.0], lr=0.1, warmup=0.2, t_total=10)
    for p, want in zip(params, expected):
        np.testing.assert_allclose(p.detach().numpy(), want, rtol=0, atol=1e-12)
    # the schedule is read at the pre-increment step: the first step had lr 0, so parameters did not
    # move then; get_lr() reports the lr of the next step (6 of 10, warmup 0.2 -> 0.5)
    assert optimizer.get_lr() == pytest.approx([0.1 * 0.5, 0.1 * 0.5])


def test_first_warmup_step_changes_nothing_and_parameters_without_grad_are_skipped():
    weight = torch.nn.Parameter(torch.ones(3))
    frozen = torch.nn.Parameter(torch.ones(2))
    optimizer = BertAdam([weight, frozen], lr=1.0, warmup=0.1, t_total=100)
    weight.grad = torch.ones(3)
    optimizer.step()
    assert torch.equal(weight, torch.ones(3)) and len(optimizer.state[frozen]) == 0
    optimizer.step()
    assert torch.all(weight < 1)


@pytest.mark.parametrize(
    "name, warmup, points",
    [
        ("warmup_linear", 0.1, {0: 0.0, 5: 0.5, 10: 1.0, 55: 0.5, 100: 0.0, 120: 0.0}),
        ("warmup_linear", -1, {0: 1.0, 25: 0.75, 100: 0.0}),
        ("warmup_constant", 0.1, {0: 0.0, 5: 0.5, 10: 1.0, 99: 1.0, 150: 1.0}),
        ("warmup_cosine", 0.1, {5: 0.5, 10: 1.0, 55: 0.5, 100: 0.0, 32.5: 0.5 * (1 + math.cos(math.pi / 4))}),
        ("none", 0.1, {0: 1.0, 50: 1.0, 500: 1.0}),
        (None, -1, {0: 1.0, 1000: 1.0}),
    ],
)
def test_schedule_values(name, warmup, points):
    schedule = SCHEDULES[name](warmup=warmup, t_total=100)
    for step, value in points.items():
        assert schedule.get_lr(step) == pytest.approx(value, abs=1e-12), step


def test_schedule_edge_cases(caplog):
    with caplog.at_level(logging.WARNING):
        assert SCHEDULES["warmup_linear"](warmup=0.1, t_total=-1).get_lr(10**6) == 1.0
        SCHEDULES["warmup_linear"](warmup=0.1, t_total=10).get_lr(20)
    assert "results in schedule not being applied" in caplog.text and "Training beyond specified 't_total'" in caplog.text
    with pytest.raises(InputError, match="invalid warmup 1.0"):
        SCHEDULES["warmup_linear"](warmup=1.0, t_total=10)
    with pytest.raises(InputError, match="invalid schedule 'cosine'"):
        BertAdam([torch.nn.Parameter(torch.ones(1))], lr=0.1, schedule="cosine")


def train(optimizer, params, steps, start=0):
    for step in range(start, steps):
        for i, p in enumerate(params):
            p.grad = torch.full_like(p, float(step + i + 1)) * (-1) ** step
        optimizer.step()


def test_state_dict_round_trip_resumes_identically():
    def fresh():
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
        return params, BertAdam(params, lr=0.05, warmup=0.1, t_total=20, schedule="warmup_cosine")

    straight_params, straight = fresh()
    train(straight, straight_params, 8)

    params, optimizer = fresh()
    train(optimizer, params, 4)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "params": [p.detach().clone() for p in params]}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # no pickled schedule objects in the state
    resumed_params, resumed = fresh()
    with torch.no_grad():
        for p, value in zip(resumed_params, saved["params"]):
            p.copy_(value)
    resumed.load_state_dict(saved["optimizer"])
    assert resumed.param_groups[0]["schedule"].get_lr(7) == straight.param_groups[0]["schedule"].get_lr(7)
    train(resumed, resumed_params, 8, start=4)
    for a, b in zip(resumed_params, straight_params):
        assert torch.equal(a, b)
