"""``dht-node`` / ``python -m peer``: run one DHT node until SIGTERM/SIGINT.

The command line is parsed by ``peer.cli`` (typer); a process that ``peer.cli`` re-executed
with validated options (``peer.serve.RESOLVED_ENV``) serves them without importing typer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from peer.serve import RESOLVED_ENV, serve_resolved


def main(argv: Sequence[str] | None = None) -> None:
    resolved = os.environ.pop(RESOLVED_ENV, None)
    if resolved is not None and argv is None:
        sys.exit(serve_resolved(resolved))
    from peer.cli import main as cli_main

    sys.exit(cli_main(argv))


if __name__ == "__main__":
    main()
