"""``GET /api/v1/health``: whether the server answers (never needs the token)."""

from __future__ import annotations

from typing import Any

from ..protocols import VisualizerLike
from .view import View


def health(vis: VisualizerLike, body: Any) -> dict[str, str]:
    return {"status": "ok"}


VIEW = View(
    "health",
    health,
    "Liveness",
    takes_body=False,
    public=True,
    errors=(),
    responses={
        "200": {
            "description": "ok",
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"}}}}
            },
        }
    },
)
