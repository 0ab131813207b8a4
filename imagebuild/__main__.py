"""``python -m imagebuild [BASE_IMAGE]``: build the image, print its tag (exit 1 on failure)."""

from __future__ import annotations

import sys

from imagebuild.build import main

sys.exit(main())
