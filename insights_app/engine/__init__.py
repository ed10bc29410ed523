"""Batched prediction and attribution for one model: :class:`Engine` and what its ``run`` gives.

The package, by job: ``core`` (:class:`Engine`: run, predict, attribute, metrics dispatch),
``results`` (the result types and failure isolation), ``readthrough`` (memory, store, compute),
``keys`` (what results are keyed by), ``forward`` (cancellable and shared forward passes),
``seeding`` (randomized methods made reproducible); how many examples go to one captum call is
:mod:`insights_app.engine.call_sizes`. The names below are the ones the rest of the app imports.
"""

from .call_sizes import CALL_GRADIENT_BYTES, CALL_INPUT_BYTES, PASS_INPUT_BYTES
from .core import Engine
from .forward import CancellableForward, ReusedForward
from .keys import arguments_key, fingerprints
from .readthrough import Backing, ReadThrough
from .results import Explanation, Failure, KeptAttributions, Prediction, Result, contributions
from .seeding import seeded_rngs

__all__ = [
    "CALL_GRADIENT_BYTES",
    "CALL_INPUT_BYTES",
    "PASS_INPUT_BYTES",
    "Backing",
    "CancellableForward",
    "Engine",
    "Explanation",
    "Failure",
    "KeptAttributions",
    "Prediction",
    "ReadThrough",
    "Result",
    "ReusedForward",
    "arguments_key",
    "contributions",
    "fingerprints",
    "seeded_rngs",
]
