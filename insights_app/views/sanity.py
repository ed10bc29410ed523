"""``POST /api/v1/sanity``: the model-randomization check of one example's map under one model.

The body is an attribute request (example, model, method, arguments, target, visualization);
the answer has the example with its original map, and per randomization step (the layers
randomized so far, last layer first) the map on the randomized copy, drawn the same way, with
its Spearman rank correlation and SSIM against the original, and whether the method is
flagged "insensitive to the model" (see :mod:`insights_app.metrics.sanity`).
"""

from __future__ import annotations

from typing import Any

from ..cancel import Cancel
from ..dataset import ExampleBatch
from ..engine import Explanation, Result
from ..metrics.sanity import sanity_check
from ..query import ATTRIBUTE_BODY, AttributeQuery
from . import attribute
from .view import View


def sanity(vis: Any, body: Any, cancel: Cancel | None = None) -> dict[str, Any]:
    q = body if isinstance(body, AttributeQuery) else ATTRIBUTE_BODY.parse(body, vis.defaults)
    ex = attribute.example_of(vis, q, cancel)
    engine = vis.engines[q.model]
    (result,) = engine.run([ex], q.method, q.arguments, [q.target], cancel=cancel)
    model = vis.presenter.model(q.model, ex, result, q.visualization, q.top_k)
    out: dict[str, Any] = {"example": vis.presenter.example(ex, [model]), "sanity": None}
    exp = result.explanation
    if exp is None or exp.target is None:
        out["sanity"] = {"error": result.error or "the check needs a class to attribute to"}
        return out
    (checked,) = engine.compute.run(
        sanity_check, engine, q.method, q.arguments, ExampleBatch.stack([ex]), [exp.target], [exp.maps], cancel=cancel
    )
    steps = []
    for name, maps, rho, ssim in zip(checked.steps, checked.maps, checked.spearman, checked.ssim):
        randomized = Result(ex.id, result.prediction, Explanation(exp.target, maps, exp.contributions, exp.key))
        drawn = vis.presenter.model(q.model, ex, randomized, q.visualization, q.top_k)
        steps.append({"randomized": name, "spearman": rho, "ssim": ssim, "attributions": drawn["attributions"]})
    out["sanity"] = dict(checked.to_json(), steps=steps)
    return out


VIEW = View(
    "sanity",
    sanity,
    "The model-randomization sanity check of one example's map under one model",
    request_schema=ATTRIBUTE_BODY.openapi,
    computes=True,
    responses={
        "200": {
            "description": "the example, and its maps on the model randomized from the last layer down",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "example": {"$ref": "#/components/schemas/Example"},
                            "sanity": {"type": "object"},
                        },
                    }
                }
            },
        }
    },
)
