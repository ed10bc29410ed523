"""Seeded, reproducible randomized methods: torch's and numpy's process-wide generators, one user at a time."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np
import torch

# Guards torch's and numpy's default generators, which are themselves process-wide state.
_PROCESS_RNG_LOCK = threading.Lock()


@contextlib.contextmanager
def seeded_rngs(seed: int, cpu_only: bool = False, numpy: bool = True) -> Iterator[None]:
    """Seed torch's (and numpy's) global generators for one captum call, then restore them.

    Captum draws noise from torch and, for Gradient SHAP, baseline indices and path
    coefficients from numpy; seeding makes randomized methods reproducible (and so
    cacheable). Those generators are process-wide, so two models computing at once would
    draw from (and re-seed) each other's streams: the results would depend on what else is
    running. One seeded computation at a time holds them. ``cpu_only``: the computation runs
    on the CPU, so only the CPU generator needs seeding (``torch.manual_seed`` also visits
    every other backend, which costs ~0.4 ms per call). ``numpy=False`` leaves numpy's
    generator alone: saving and restoring its state costs ~0.1 ms, paid per example.
    """
    with _PROCESS_RNG_LOCK:
        np_state = np.random.get_state() if numpy else None
        # What torch.random.fork_rng(devices=[]) saves and restores, without its ~2 ms per call
        # (randomized methods run one example per call, so this is paid per example).
        torch_state = torch.get_rng_state()
        try:
            if cpu_only:
                torch.default_generator.manual_seed(seed)
            else:
                torch.manual_seed(seed)
            if numpy:
                np.random.seed(seed % 2**32)
            yield
        finally:
            torch.set_rng_state(torch_state)
            if np_state is not None:
                np.random.set_state(np_state)
