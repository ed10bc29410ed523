"""Shared test set-up (models and datasets live in the *_helpers.py modules)."""

from __future__ import annotations

import os
import sys

import torch

# Make the helper modules importable as plain modules from every test file.
sys.path.insert(0, os.path.dirname(__file__))
# Two cores are shared by everything; keep torch from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
