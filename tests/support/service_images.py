"""The service images (``ops.images.python``), as the tests use them."""

from ops.images.python import (
    AGENT,
    ALL,
    CHROMA,
    MODEL_REQUIREMENT,
    RAG,
    TIMINGS,
    Built,
    Service,
    build_image,
    image_size,
    pins,
    remove_stale_images,
    wheelhouse,
)

__all__ = [
    "AGENT", "ALL", "CHROMA", "MODEL_REQUIREMENT", "RAG", "TIMINGS", "Built", "Service",
    "build_image", "image_size", "pins", "remove_stale_images", "wheelhouse",
]  # fmt: skip
