"""Host-side tooling that builds the project's Docker image (``build_images``).

It lives outside the packages the image ships (``node``, ``peer``, ``control``, ``signaling``,
``supervisor``): the image does not carry the tool that builds it, and ``pyproject.toml``
leaves this package out of the wheel. Users: ``orchestrate.py build|all``, ``images/ci-docker.sh``
(``python -m imagebuild``), ``bench/`` and the Docker tests.
"""

from __future__ import annotations

from imagebuild.build import IMAGE_TAG, build_images, main

__all__ = ["IMAGE_TAG", "build_images", "main"]
