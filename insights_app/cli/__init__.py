"""insights-app: serve the Insights web app for a model from the command line.

    insights-app                                        the demo (a fastai CNN on digits)
    insights-app --demo tabular                         the tabular demo (a fastai tabular learner)
    insights-app --learner export.pkl --data images/    an exported fastai learner on new images
    insights-app --model mymodels:build --data images/  a torch model (a factory) on an image folder
    insights-app --model weights.pt --arch resnet18 --data images/ --classes classes.txt
    insights-app precompute --model ... --data images/ --store runs/ --methods IntegratedGradients
    insights-app export --model ... --data images/ --format html --out report.html
    insights-app method-report --model ... --data images/ --sample 64
    insights-app prune --store runs/ --max-size 2G

Flags map onto ``data_adapters`` (nothing is re-implemented here); every user mistake
(a missing file, an unknown architecture, weights that do not fit) is one line on stderr
and exit status 2, never a traceback (``--debug`` shows them).

The modules: ``main`` (the entry point), ``arguments`` (the flags and their checks),
``preflight`` (files, classes, store, port and device, before the slow work), ``build`` (the
visualizer the source flags name), ``errors`` (one-line errors and output), and one module per
subcommand: ``serve`` (the default), ``precompute``, ``export``, ``method_report``, ``prune``.
"""

from __future__ import annotations

from .errors import CliError
from .main import main

__all__ = ["CliError", "main"]
