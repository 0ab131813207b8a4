"""What the node offers the control plane: ``NodeAPI``.

The command set is declared once, as the ``NodeAPI`` protocol in ``control.commands``; this
module is where implementations (the node runtime's control adapter) import it from.
``ControlServer`` validates arguments against the table derived from it and then calls the
method named after the command with keyword arguments. Methods return the result map of
docs/interfaces.md and raise ``control.errors.CommandError`` for failures. The in-memory fake
node used by tests lives in ``tests/support/fake_node.py``.
"""

from __future__ import annotations

from control.commands import NodeAPI, Result

__all__ = ["NodeAPI", "Result"]
