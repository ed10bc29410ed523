"""Every bound a request is held to, in one place (published by ``GET /api/v1/config``)."""

from __future__ import annotations

PAGE_SIZE_MAX = 64  # examples per page
TOP_K_MAX = 20  # predictions shown (and kept) per example and model
PAGE_MAX = 1_000_000
EXAMPLE_ID_MAX = 2**40
# Forward passes one example may cost, so no request can run for hours.
MAX_EVALS_PER_EXAMPLE = 20_000
# Longest side of an image the app sends: the page shows images at most 256 CSS px wide (512
# device px on a HiDPI screen). Larger inputs are averaged down before rendering, which bounds
# the time and the bytes one example costs whatever the dataset's image size.
MAX_DISPLAY_SIDE = 512
MAX_BODY_BYTES = 1 * 2**20  # a request body
# The side an adapter resizes images to, at most: one 4096x4096 RGB image is 200 MB as float32,
# and every method's passes scale with it.
MAX_RESIZE_SIDE = 4096
