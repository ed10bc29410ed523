"""A Python user's first calls, in a fresh interpreter: no third-party deprecation notes above the widget.

fastai's import warns that ``torch.jit.script`` is deprecated (and, with pandas 3, that an option it
sets is): a note the user cannot act on, printed above the first cell's widget. Our imports of
third-party modules silence those notes (``insights_app.quiet_imports``), and only those: a warning
of the user's own, after the import, still shows. Each check runs ``python -W default`` (every
warning shown once, as a notebook would show a FutureWarning) in a subprocess, so that nothing
imported by this test process hides the first import.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from adapters_helpers import digit_cnn, write_digit_folders
from launch_helpers import ROOT, launch_env

from insights_app import quiet_imports

USER_WARNINGS = """
import warnings
warnings.warn("the user's own FutureWarning", FutureWarning)
warnings.warn("the user's own DeprecationWarning", DeprecationWarning)
"""
WARNING_LINE = re.compile(r"^\S.*?:\d+: (\w*Warning): (.*)$")


def run_fresh(code: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -W default -c CODE`` from the repository root; fails with its output unless it exits 0."""
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", textwrap.dedent(code) + USER_WARNINGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def warnings_shown(stderr: str) -> list:
    """(category, message) of every warning printed on stderr."""
    return [m.groups() for m in map(WARNING_LINE.match, stderr.splitlines()) if m]


def assert_only_the_users_warnings(stderr: str) -> None:
    assert warnings_shown(stderr) == [
        ("FutureWarning", "the user's own FutureWarning"),
        ("DeprecationWarning", "the user's own DeprecationWarning"),
    ], stderr
    assert "torch.jit.script" not in stderr and "Traceback" not in stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple:
    """A small exported fastai learner (untrained: only loading it matters) and a folder of new images."""
    with quiet_imports():  # this process's own import of fastai
        from fastai.learner import Learner
        from fastai.losses import CrossEntropyLossFlat
        from fastai.vision.core import PILImageBW
        from fastai.vision.data import ImageDataLoaders

    root = tmp_path_factory.mktemp("first-run")
    write_digit_folders(root / "digits", n_train=20, n_valid=10)
    dls = ImageDataLoaders.from_folder(
        root / "digits", train="train", valid="valid", img_cls=PILImageBW, bs=8, num_workers=0
    )
    learn = Learner(dls, digit_cnn(len(dls.vocab)), loss_func=CrossEntropyLossFlat())
    learn.export(root / "export.pkl")
    return root / "export.pkl", root / "digits" / "valid"


def test_first_imports_and_adapters_show_no_third_party_deprecations(exported, tmp_path):
    export, folder = exported
    photos = tmp_path / "photos"
    for name in ("cat", "dog", "misc"):  # misc: a sub-folder that is not a class
        (photos / name).mkdir(parents=True)
        for f in sorted(folder.glob("*/*.png"))[:2]:
            (photos / name / f.name).write_bytes(f.read_bytes())
    result = run_fresh(
        f"""
        import insights_app
        from insights_app import AttributionVisualizer, Batch
        from insights_app.features import ImageFeature
        from insights_app.transport.notebook import InsightsWidget
        from insights_app.testing import ConvNet, seeded
        from data_adapters import from_export, from_folder

        InsightsWidget(from_export({str(export)!r}, items={str(folder)!r}))
        vis = from_folder({str(photos)!r}, seeded(ConvNet, 3, 2), classes=["cat", "dog"])
        print(vis.page({{"page_size": 6, "method": "Saliency"}})["examples"][-1]["label"])
    """,
        launch_env(tmp_path / "cache"),
    )
    assert_only_the_users_warnings(result.stderr)
    # the folder adapter's warning reaches a Python user who configured no logging (logging's last resort)
    assert "showing 2 images unlabeled: sub-folder 'misc' (2 images) is not one of the 2 classes" in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "None"  # a misc image, unlabeled


@pytest.mark.slow
def test_the_demo_in_a_notebook_on_an_empty_cache_shows_no_third_party_deprecations(tmp_path):
    """``demo_visualizer().render()``, the README's first notebook cell: it trains fastai's CNN first."""
    result = run_fresh(
        """
        from insights_app.demos.digits import demo_visualizer
        from insights_app.transport.notebook import InsightsWidget

        InsightsWidget(demo_visualizer(progress=lambda message: None))
    """,
        launch_env(Path(tmp_path) / "cache"),
    )
    assert_only_the_users_warnings(result.stderr)
