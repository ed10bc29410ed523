"""Shared test set-up: the fixtures more than one test module uses.

Plain helpers (models, datasets, servers, page helpers) live in the *_helpers.py modules and are
imported where used; the fixtures live here, so pytest finds them without an import. The costly
ones are built once per test run (session scope): the trained digits CNN and its visualizer and
server, the mixed-features visualizer, the digits written as PNG folders and the fastai learner
trained on them. Tests only read those; a test that changes a visualizer or a model builds its
own (``make_digits_visualizer``, ``train_digits_cnn``, ...).

Every test that uses the ``chromium`` fixture (directly or through ``ui``) is marked ``browser``
here, so ``-m "not browser"`` leaves Chromium out.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Make the helper modules importable as plain modules from every test file.
sys.path.insert(0, os.path.dirname(__file__))
# Two cores are shared by everything; keep torch from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from adapters_helpers import train_digits_learner, write_digit_folders  # noqa: E402
from ui_helpers import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    DigitsSetup,
    Page,
    accuracy,
    make_digits_visualizer,
    make_mixed_visualizer,
    serve,
    train_digits_cnn,
)

from insights_app import AttributionVisualizer  # noqa: E402
from insights_app.transport.serving import ServerHandle  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that drives Chromium (through the ``chromium`` fixture) as ``browser``."""
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


# ---------------------------------------------------------------- the digits CNN, its visualizers and server


@pytest.fixture(scope="session")
def digits_setup() -> DigitsSetup:
    """The trained CNN and a one-model visualizer over the held-out digits."""
    model = train_digits_cnn()
    return DigitsSetup(model, make_digits_visualizer([model], ["DigitsCNN"]), accuracy(model))


@pytest.fixture(scope="session")
def digits_visualizer(digits_setup: DigitsSetup) -> AttributionVisualizer:
    return digits_setup.visualizer


@pytest.fixture(scope="session")
def mixed_visualizer() -> AttributionVisualizer:
    """Two untrained models over three features (image, general, text)."""
    return make_mixed_visualizer()


@pytest.fixture(scope="session")
def digits_server(digits_visualizer: AttributionVisualizer) -> Iterator[ServerHandle]:
    """A waitress server on 127.0.0.1 (no token) for the digits visualizer."""
    handle = serve(digits_visualizer)
    yield handle
    handle.close()


# ---------------------------------------------------------------- digits as image folders, a fastai learner


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Path]]]:
    """scikit-learn's digits as ``root/{train,valid}/<digit>/<index>.png`` (600 and 120 files), and the files.

    Read only: a test that needs to add or move files copies them to its own ``tmp_path``.
    """
    root = tmp_path_factory.mktemp("digits")
    return root, write_digit_folders(root)


@pytest.fixture(scope="session")
def digits_learner(digits: tuple[Path, dict[str, list[Path]]]):
    """The one trained fastai learner of a test run: a grey CNN over ``digits`` with a Normalize.

    Tests read it (predictions, export, adapters); one that trains or changes a learner builds its own.
    """
    pytest.importorskip("fastai.vision.all")
    root, files = digits
    return train_digits_learner(root, files)


# ---------------------------------------------------------------- images for the SLIC superpixel methods


@pytest.fixture(scope="module")
def smooth_setup() -> tuple:
    """(vis, model, raw, x, zeros, targets) over four blurred random images (module scope: a test may change vis)."""
    from engine_helpers import normalized_images_setup  # torchvision: only for the modules that use it

    return normalized_images_setup(smooth=True)


# ---------------------------------------------------------------- headless Chromium


@pytest.fixture(scope="module")
def chromium():
    """One headless Debian Chromium per test module (Playwright; never downloads a browser).

    Module scope, not session: a live sync Playwright runs an event loop in the main thread,
    which would break later modules that use asyncio (nbclient) or start their own Playwright.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium) "
            "or set INSIGHTS_CHROMIUM; browser tests never download one"
        )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def ui(chromium) -> Iterator[Page]:
    """A fresh browser context and page; the test fails if the page logged a script error."""
    p = Page(chromium)
    yield p
    p.close()
    assert not p.errors, p.errors
