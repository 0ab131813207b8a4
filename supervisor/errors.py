"""The supervisor's exception tree.

    SupervisorError
    ├── LaunchError          a backend refused to start/stop/inspect a member (one clear message)
    ├── StateError           the cluster state file is unreadable or malformed
    ├── ClusterNotRunning    no live supervisor for the named cluster
    ├── ClusterUnreachable   the supervisor's front endpoint did not answer in time
    ├── NotFormed            the DHT did not form before the deadline
    └── CommandFailed        an error reply from the front endpoint (a control RemoteError)
        └── KeyNotFound      ``get`` of a key nobody holds (code ``not_found``)

Local misuse (bad arguments to the Python API) raises ``ValueError`` as usual.
"""

from __future__ import annotations

from control.errors import RemoteError


class SupervisorError(Exception):
    """Base class of everything the supervisor package raises on purpose."""


class LaunchError(SupervisorError):
    """A launcher backend refused an operation (engine unreachable, image missing, ...)."""


class StateError(SupervisorError):
    """The cluster state file exists but cannot be used."""


class ClusterNotRunning(SupervisorError):
    """There is no live supervisor for this cluster."""


class ClusterUnreachable(SupervisorError):
    """The supervisor front endpoint did not reply in time."""


class NotFormed(SupervisorError):
    """The DHT did not form before the deadline."""


class CommandFailed(SupervisorError, RemoteError):
    """An error reply from the front endpoint (or a node behind it): ``code``, ``message``,
    ``details``, as every coded control-plane error."""


class KeyNotFound(CommandFailed):
    """``get`` found no value for the key."""
