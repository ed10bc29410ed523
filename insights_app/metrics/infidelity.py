"""Infidelity (captum.metrics.infidelity) with a seeded Gaussian perturbation.

The expected squared difference between the attribution's dot product with a perturbation and
the change of the target's output under it (the model's raw output, which the methods explain) (Yeh et al., 2019); lower is better. The
perturbation is Gaussian noise of standard deviation ``noise`` (in the model's input space)
drawn from torch's generator seeded with ``seed``: the same seed gives the same value.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.metrics import infidelity as captum_infidelity


def gaussian_perturbation(noise: float) -> Callable[..., tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    """captum's perturb_func: (inputs) -> (perturbations I, inputs - I), I ~ N(0, noise^2)."""

    def perturb(*inputs: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        perturbations = tuple(torch.randn_like(x) * noise for x in inputs)
        return perturbations, tuple(x - p for x, p in zip(inputs, perturbations))

    return perturb


def infidelity(
    scores: Callable[..., torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    attributions: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    samples: int,
    noise: float,
    seed: int,
    rows: int = 64,
) -> torch.Tensor:
    """One value per example (normalized: the attribution's scale does not count)."""
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return (
            captum_infidelity(
                scores,
                gaussian_perturbation(noise),
                inputs,
                attributions,
                target=targets,
                n_perturb_samples=samples,
                max_examples_per_batch=_per_batch(len(targets), samples, rows),
                normalize=True,
            )
            .detach()
            .cpu()
        )
    finally:
        torch.set_rng_state(generator_state)


def _per_batch(n: int, samples: int, rows: int) -> int:
    """Perturbed rows per forward pass: captum wants between n and n * samples."""
    return max(n, min(n * samples, rows))
