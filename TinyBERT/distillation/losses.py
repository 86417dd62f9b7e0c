"""TinyBERT's distillation losses, shared by general and task distillation.

The arithmetic is the original's: attention scores are pre-softmax with the additive mask (-10000) already
added, and every entry <= -1e2 (a masked key) is set to 0 in both student and teacher before a mean MSE, so
masked entries add no error but still count in the mean; hidden states (student ones already projected by
fit_dense) are compared with a mean MSE over every position, padding included. Student layer i learns from
teacher layer (i + 1) * T / S (attention) and hidden state i from teacher hidden state i * T / S (index 0
is the embedding output). Prediction-layer distillation is a soft cross-entropy averaged over batch *and*
classes, without the T^2 factor, exactly as the original wrote it.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from utils.errors import InputError

MASKED_SCORE_THRESHOLD = -1e2


def layer_mapping(teacher_layers: int, student_layers: int) -> tuple[list[int], list[int]]:
    """(teacher attention indices, teacher hidden-state indices) the student's layers learn from.

    With T teacher and S student layers, T a multiple of S, and lpb = T / S: attention i <- teacher
    attention i*lpb + lpb - 1 (S of them), hidden state i <- teacher hidden state i*lpb (S + 1 of them,
    the embedding output first). 12 -> 4: attentions 2, 5, 8, 11; hidden states 0, 3, 6, 9, 12.
    """
    if student_layers <= 0 or teacher_layers <= 0:
        raise InputError(f"cannot map {student_layers} student layers onto {teacher_layers} teacher layers")
    if teacher_layers % student_layers != 0:
        raise InputError(
            f"the teacher's {teacher_layers} layers are not a multiple of the student's {student_layers} "
            "(TinyBERT maps every student layer onto a block of teacher layers)"
        )
    per_block = teacher_layers // student_layers
    atts = [i * per_block + per_block - 1 for i in range(student_layers)]
    reps = [i * per_block for i in range(student_layers + 1)]
    return atts, reps


def _mse(student: torch.Tensor, teacher: torch.Tensor, what: str) -> torch.Tensor:
    if student.shape != teacher.shape:
        raise InputError(
            f"student and teacher {what} have different shapes {tuple(student.shape)} and {tuple(teacher.shape)} "
            "(the student needs the teacher's head count, and fit_size equal to the teacher's hidden size)"
        )
    return F.mse_loss(student.float(), teacher.float())


def att_loss(student_atts: Sequence[torch.Tensor], teacher_atts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over student layers of MSE(student scores, mapped teacher scores), entries <= -1e2 set to 0 in both.

    teacher_atts may be every teacher layer (mapped here by layer_mapping) or already one per student layer.
    """
    indices, _ = layer_mapping(len(teacher_atts), len(student_atts))
    loss = student_atts[0].new_zeros((), dtype=torch.float32)
    for student, index in zip(student_atts, indices):
        teacher = teacher_atts[index]
        student = torch.where(student <= MASKED_SCORE_THRESHOLD, torch.zeros_like(student), student)
        teacher = torch.where(teacher <= MASKED_SCORE_THRESHOLD, torch.zeros_like(teacher), teacher)
        loss = loss + _mse(student, teacher, "attention scores")
    return loss


def rep_loss(student_reps: Sequence[torch.Tensor], teacher_reps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over the S + 1 student hidden states (fit_dense applied) of MSE to the mapped teacher hidden states.

    teacher_reps may be all T + 1 teacher hidden states (mapped here) or already S + 1 of them.
    """
    _, indices = layer_mapping(len(teacher_reps) - 1, len(student_reps) - 1)
    loss = student_reps[0].new_zeros((), dtype=torch.float32)
    for student, index in zip(student_reps, indices):
        loss = loss + _mse(student, teacher_reps[index], "hidden states")
    return loss


def intermediate_losses(student: Any, teacher: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(att_loss, rep_loss) between a student's and a teacher's model outputs (their attentions and
    hidden_states; the student's hidden states already through fit_dense)."""
    return att_loss(student.attentions, teacher.attentions), rep_loss(student.hidden_states, teacher.hidden_states)


def soft_cross_entropy(predicts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean(-softmax(targets) * log_softmax(predicts)) over batch and classes: the original's soft CE (no T^2).

    Called as soft_cross_entropy(student_logits / T, teacher_logits / T).
    """
    student_log_probs = F.log_softmax(predicts.float(), dim=-1)
    teacher_probs = F.softmax(targets.float(), dim=-1)
    return (-teacher_probs * student_log_probs).mean()
