"""``python -m control`` is ``dhtctl``."""

from __future__ import annotations

from control.cli import main

main()
