"""The local Debian base image (``ops.images.base``), as the tests use it."""

from ops.images.base import IMAGE, TIMINGS, apt_mirror, debian_base_image, file_lock, image_exists

__all__ = ["IMAGE", "TIMINGS", "apt_mirror", "debian_base_image", "file_lock", "image_exists"]
