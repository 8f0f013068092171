"""The loss formulas against hand computation on fixed numbers."""

from __future__ import annotations

import math

import numpy as np
import torch

from nft_deploy.training.losses import default_gammas, default_offsets, feedback_loss, orthogonality_penalty


def test_ovf_loss_equals_hand_computed_value_on_fixed_logits():
    z = torch.tensor([[2.0, 0.0, -1.0]])
    o = [torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]]), torch.tensor([[4.0, 0.0, 0.0]])]
    beta, gammas = 0.5, (1.0, 0.1, 0.01)
    # by hand: z - 0.5 * (o1 + 0.1 o2 + 0.01 o3) = [2 - 0.5*1.04, 0 - 0.5*1.2, -1] = [1.48, -0.6, -1.0]; / 4
    logits = [1.48 / 4, -0.6 / 4, -1.0 / 4]
    expected = -logits[0] + math.log(sum(math.exp(v) for v in logits))
    got = feedback_loss(z, o, torch.tensor([0]), beta, gammas)
    assert abs(float(got) - expected) < 1e-6


def test_feedback_loss_with_beta_zero_is_temperature_cross_entropy():
    g = torch.Generator().manual_seed(1)
    z, o = torch.randn(5, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 0])
    ref = torch.nn.functional.cross_entropy(z / 3, y)
    assert torch.allclose(feedback_loss(z, o, y, 0.0, (1.0, 0.1)), ref)


def test_reference_defaults_for_offsets_and_gammas():
    assert default_offsets(3) == (0.15, 0.10, 0.05)
    assert default_gammas(3) == (1.0, 0.1, 0.01)
    assert default_offsets(1) == (0.05,)


def test_orthogonality_penalty_matches_numpy_float64():
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(3, 2, 2, 2, generator=g), torch.randn(4, 5, generator=g)]
    ref = 0.0
    for w in ws:
        m = w.double().numpy().reshape(w.shape[0], -1)
        ref += np.sum((m.T @ m - np.eye(m.shape[1])) ** 2)
    assert abs(float(orthogonality_penalty(ws)) - ref) < 1e-3 * ref
