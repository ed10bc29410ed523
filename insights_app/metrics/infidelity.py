"""Infidelity (captum.metrics.infidelity) with a seeded Gaussian perturbation.

The expected squared difference between the attribution's dot product with a perturbation and
the change of the target's output under it (the model's raw output, which the methods explain) (Yeh et al., 2019); lower is better. The
perturbation is Gaussian noise of standard deviation ``noise`` (in the model's input space)
drawn from torch's generator seeded with ``seed``: the same seed gives the same value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from captum.metrics import infidelity as captum_infidelity

from .spec import MetricContext, MetricSpec, Number, Setting, Value, finite


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


def compute_infidelity(ctx: MetricContext, names: Sequence[str]) -> list[dict[str, Value]]:
    """Each example's infidelity, from the run's full-resolution attributions where it kept them."""
    engine, inputs = ctx.engine, ctx.inputs
    if ctx.attributions is not None and all(a is not None for a in ctx.attributions):
        kept = [a for a in ctx.attributions if a is not None]
        attrs = tuple(torch.stack([a[f] for a in kept]) for f in range(len(inputs)))
    else:
        attrs = engine.attribute(ctx.method, ctx.params, ctx.batch, ctx.targets.tolist(), inputs=inputs)
    # What the methods explain is the model's raw output (captum is given engine.forward), so
    # infidelity compares the attribution with changes of that output, not of the scores.
    # Its random perturbations are drawn per pass, so its rows per pass stay what they were:
    # fewer would change the stored values.
    values = infidelity(
        ctx.outputs(),
        inputs,
        attrs,
        ctx.targets.to(engine.device),
        ctx.options.integer("samples"),
        ctx.options.number("noise"),
        ctx.options.integer("seed"),
        engine.internal_batch_size,
    )
    return [{"infidelity": finite(v)} for v in values.tolist()]


def _passes(values: Mapping[str, Number], method_cost: int) -> int:
    # the perturbed passes, the unperturbed one, and the attribution again where the run did not keep it
    return int(values["samples"]) + 1 + method_cost


# Shared with max-sensitivity (one setting each: a request sets them once for both).
SAMPLES = Setting("samples", 8, 1, 64, "infidelity / sensitivity: perturbations drawn per example")
SEED = Setting("seed", 0, 0, 2**31 - 1, "infidelity / sensitivity: the seed of the perturbations")
NOISE = Setting(
    "noise", 0.1, 0.0, 10.0, "infidelity: the standard deviation of the Gaussian perturbation (model input space)"
)

INFIDELITY = MetricSpec(
    name="infidelity",
    label="infidelity",
    short="infid",
    help="How far the attribution's dot product with a small Gaussian perturbation is from the change "
    "of the model's output under it (Yeh et al., 2019)",
    settings=(SAMPLES, NOISE, SEED),
    compute=compute_infidelity,
    lower_is_better=True,
    cost=_passes,
    keeps_attributions=True,
)
