"""Max-sensitivity (captum.metrics.sensitivity_max) with captum's seeded uniform perturbation.

The largest relative change of the attribution (Frobenius norm) when the input moves by
uniform noise within ``radius`` (in the model's input space), over ``samples`` draws (Yeh et
al., 2019); lower is better: an explanation that changes for a change nobody can see is not
to be read closely. It runs the method ``samples`` times per example.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from captum.metrics import sensitivity_max as captum_sensitivity_max

from .infidelity import SAMPLES, SEED
from .spec import MetricContext, MetricSpec, Number, Setting, Value, finite


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


def compute_sensitivity(ctx: MetricContext, names: Sequence[str]) -> list[dict[str, Value]]:
    """Each example's max-sensitivity: the method runs on every perturbed copy."""
    engine, batch = ctx.engine, ctx.batch

    def explain(perturbed: Any, target: Any = None) -> tuple[torch.Tensor, ...]:
        ctx.check()
        perturbed = tuple(perturbed) if isinstance(perturbed, (tuple, list)) else (perturbed,)
        n = int(perturbed[0].shape[0])
        per = max(1, n // len(batch))
        rows_of = [min(len(batch) - 1, r // per) for r in range(n)]
        t = None if target is None else torch.as_tensor(target).reshape(-1).tolist()
        return engine.attribute(ctx.method, ctx.params, batch.select(rows_of), t, inputs=tuple(perturbed))

    values = sensitivity(
        explain,
        ctx.inputs,
        ctx.targets.to(engine.device),
        ctx.options.integer("samples"),
        ctx.options.number("radius"),
        ctx.options.integer("seed"),
    )
    return [{"sensitivity": finite(v)} for v in values.tolist()]


def _passes(values: Mapping[str, Number], method_cost: int) -> int:
    return (int(values["samples"]) + 1) * method_cost


RADIUS = Setting("radius", 0.02, 0.0, 10.0, "sensitivity: the radius of the uniform perturbation (model input space)")

SENSITIVITY = MetricSpec(
    name="sensitivity",
    label="max-sensitivity",
    short="sens",
    help="The largest relative change of the attribution when the input moves by uniform noise within "
    "a small radius (Yeh et al., 2019)",
    settings=(SAMPLES, RADIUS, SEED),
    compute=compute_sensitivity,
    lower_is_better=True,
    cost=_passes,
)
