"""Benchmarks: the insights-app server against raw captum on the same inputs, in one run.

Run ``python -m bench`` (``--quick`` for a short run, ``--help`` for the options).
"""

DEFAULT_METHODS = ("IntegratedGradients", "Saliency", "Occlusion", "GradientShap", "NoiseTunnel(Saliency)")
