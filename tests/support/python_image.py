"""A local image with Debian's Python, for tests that profile a process inside a container.

Built on the local Debian base (``base_image.py``) with ``apt-get install
python3-minimal`` from the same mirror the host uses, no registry involved.
Tagged by a digest of the Dockerfile and the base image, so it is built once
and reused until either changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

from tests.support.base_image import debian_base_image, file_lock, image_exists

DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-minimal \\
 && rm -rf /var/lib/apt/lists/*
"""
BUILD_TIMEOUT = 900


def python_image() -> str:
    """The tag of an image whose ``python3`` is Debian's."""
    docker = shutil.which("docker")
    assert docker, "docker is not installed"
    base = debian_base_image()
    base_id = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", base],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    tag = "vots-ops-test/python:" + hashlib.sha256((DOCKERFILE + base_id).encode()).hexdigest()[:16]
    if image_exists(docker, tag):
        return tag
    with file_lock("vots-ops-test-python"):
        if image_exists(docker, tag):
            return tag
        proc = subprocess.run(
            [
                docker,
                "build",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "--label",
                "io.vots.test=python",
                "-t",
                tag,
                "-",
            ],
            input=DOCKERFILE,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            check=False,
        )
        assert proc.returncode == 0, (
            f"docker build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return tag
