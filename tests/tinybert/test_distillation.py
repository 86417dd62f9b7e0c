"""TinyBERT/distillation/losses.py against hand-computed values and a NumPy re-implementation of the original's loops."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distillation.losses import att_loss, layer_mapping, rep_loss, soft_cross_entropy
from utils.errors import InputError


def test_layer_mapping_matches_the_original_for_4_and_6_layer_students():
    assert layer_mapping(12, 4) == ([2, 5, 8, 11], [0, 3, 6, 9, 12])
    assert layer_mapping(12, 6) == ([1, 3, 5, 7, 9, 11], [0, 2, 4, 6, 8, 10, 12])
    assert layer_mapping(4, 4) == ([0, 1, 2, 3], [0, 1, 2, 3, 4])


def test_layer_mapping_rejects_a_teacher_that_is_not_a_multiple():
    with pytest.raises(InputError, match="not a multiple"):
        layer_mapping(12, 5)


def test_att_loss_zeroes_masked_scores_and_keeps_them_in_the_mean():
    # One layer, one batch, one head, 1 x 2 scores; the second key is masked in both (<= -1e2).
    student = [torch.tensor([[[[1.0, -10000.0]]]])]
    teacher = [torch.tensor([[[[3.0, -9999.0]]]])]
    # (1 - 3)^2 + (0 - 0)^2 over 2 entries = 2
    assert att_loss(student, teacher).item() == pytest.approx(2.0)
    # A score just above the threshold is compared as it is.
    student = [torch.tensor([[[[0.0, -99.0]]]])]
    teacher = [torch.tensor([[[[0.0, -10000.0]]]])]
    assert att_loss(student, teacher).item() == pytest.approx(99.0 ** 2 / 2)


def test_losses_equal_a_numpy_version_of_the_original_loops():
    rng = np.random.default_rng(0)
    teacher_layers, student_layers = 6, 2
    t_atts = [rng.normal(size=(2, 3, 4, 4)) for _ in range(teacher_layers)]
    s_atts = [rng.normal(size=(2, 3, 4, 4)) for _ in range(student_layers)]
    for att in t_atts + s_atts:
        att[..., -1] = -10000.0  # last key padded
    t_reps = [rng.normal(size=(2, 4, 8)) for _ in range(teacher_layers + 1)]
    s_reps = [rng.normal(size=(2, 4, 8)) for _ in range(student_layers + 1)]

    lpb = teacher_layers // student_layers
    expected_att = 0.0
    for i, s in enumerate(s_atts):
        t = t_atts[i * lpb + lpb - 1]
        expected_att += np.mean((np.where(s <= -1e2, 0, s) - np.where(t <= -1e2, 0, t)) ** 2)
    expected_rep = sum(np.mean((s - t_reps[i * lpb]) ** 2) for i, s in enumerate(s_reps))

    as_torch = lambda xs: [torch.tensor(x, dtype=torch.float32) for x in xs]  # noqa: E731
    assert att_loss(as_torch(s_atts), as_torch(t_atts)).item() == pytest.approx(expected_att, rel=1e-5)
    assert rep_loss(as_torch(s_reps), as_torch(t_reps)).item() == pytest.approx(expected_rep, rel=1e-5)
    # Teacher tensors already mapped one per student layer give the same value.
    mapped_atts = [t_atts[i * lpb + lpb - 1] for i in range(student_layers)]
    assert att_loss(as_torch(s_atts), as_torch(mapped_atts)).item() == pytest.approx(expected_att, rel=1e-5)


def test_rep_loss_names_the_shape_problem():
    with pytest.raises(InputError, match="fit_size"):
        rep_loss([torch.zeros(1, 2, 4)] * 2, [torch.zeros(1, 2, 8)] * 2)


def test_soft_cross_entropy_by_hand():
    student = torch.tensor([[0.0, math.log(3.0)]])  # softmax -> [1/4, 3/4]
    teacher = torch.tensor([[0.0, 0.0]])  # softmax -> [1/2, 1/2]
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) / 2  # mean over the 2 classes
    assert soft_cross_entropy(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_soft_cross_entropy_with_temperature_as_the_original_calls_it():
    student = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [-2.0, 4.0, 1.0]])
    temperature = 2.0
    s, t = student.numpy() / temperature, teacher.numpy() / temperature
    log_p = s - np.log(np.exp(s).sum(-1, keepdims=True))
    q = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    expected = np.mean(-q * log_p)
    got = soft_cross_entropy(student / temperature, teacher / temperature).item()
    assert got == pytest.approx(expected, rel=1e-6)
