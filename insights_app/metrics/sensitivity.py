"""Max-sensitivity (captum.metrics.sensitivity_max) with captum's seeded uniform perturbation.

The largest relative change of the attribution (Frobenius norm) when the input moves by
uniform noise within ``radius`` (in the model's input space), over ``samples`` draws (Yeh et
al., 2019); lower is better: an explanation that changes for a change nobody can see is not
to be read closely. It runs the method ``samples`` times per example.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.metrics import sensitivity_max as captum_sensitivity_max


def sensitivity(
    explain: Callable[..., tuple[torch.Tensor, ...]],
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    samples: int,
    radius: float,
    seed: int,
) -> torch.Tensor:
    """One value per example; ``explain(*inputs, target=...)`` attributes perturbed copies."""
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return (
            captum_sensitivity_max(explain, inputs, perturb_radius=radius, n_perturb_samples=samples, target=targets)
            .detach()
            .cpu()
        )
    finally:
        torch.set_rng_state(generator_state)
