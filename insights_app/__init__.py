"""insights-app: attribution explorer for PyTorch classifiers (a drop-in for captum.insights).

Code written for ``captum.insights`` runs after changing its imports::

    from insights_app import AttributionVisualizer, Batch
    from insights_app.features import ImageFeature, TextFeature, GeneralFeature
"""

from .dataset import Batch
from .features import BaseFeature, EmptyFeature, FeatureOutput, GeneralFeature, ImageFeature, TextFeature
from .visualizer import AttributionVisualizer

__all__ = [
    "AttributionVisualizer",
    "Batch",
    "BaseFeature",
    "EmptyFeature",
    "FeatureOutput",
    "GeneralFeature",
    "ImageFeature",
    "TextFeature",
]
__version__ = "0.1.0"
