"""A cluster inside a NAT lab (``--lab nat``): where each member runs and how it is reached.

The supervisor builds the lab (``supervisor.natlab``) before it starts any member and removes it
after it has stopped them all. The signaling server runs in the lab's ``wan`` namespace at
``natlab.WAN_ADDRESS``; peer ``i`` runs in its own home namespace, gathers ICE on that
namespace's address and gets the lab's STUN/TURN URLs. Control and event sockets are ``ipc://``
files in the cluster directory: namespaces do not isolate the filesystem, so the supervisor, the
front, ``dhtctl`` and ``watch`` reach every peer as before.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from supervisor import natlab
from supervisor.spec import LabOptions, Place, SupervisorConfig, signaling_url

LAB_DIR = "lab"


def lab_directory(cluster_dir: Path) -> Path:
    return Path(cluster_dir) / LAB_DIR


class ClusterLab:
    """The supervisor's NAT lab: built before the members, removed after them."""

    def __init__(self, config: SupervisorConfig, options: LabOptions) -> None:
        self.directory = lab_directory(config.cluster_dir)
        kinds = natlab.parse_kinds(options.nat, config.peers)
        self.plan = natlab.plan(natlab.lab_tag(self.directory), kinds, options.turn)
        self.lab: natlab.Lab | None = None

    async def build(self) -> None:
        self.lab = await asyncio.to_thread(natlab.build, self.plan, self.directory)

    async def teardown(self) -> None:
        await asyncio.to_thread(natlab.teardown, self.directory)
        self.lab = None

    @property
    def signaling_url(self) -> str:
        return signaling_url(natlab.SIGNALING_PORT, natlab.WAN_ADDRESS)

    def signaling_place(self) -> Place:
        return Place(self.plan.wan_netns, natlab.WAN_ADDRESS)

    def peer_place(self, index: int) -> Place:
        try:
            host = self.plan.host(index)
        except KeyError:
            raise ValueError(
                f"the NAT lab was built for {len(self.plan.hosts)} peers; it cannot grow"
            ) from None
        servers = tuple(self.lab.ice_servers) if self.lab is not None else ()
        return Place(host.netns, host.address, servers)

    def endpoints(self, index: int) -> tuple[str, str]:
        """The ``ipc://`` control and events endpoints of peer ``index``."""
        directory = natlab.ipc_directory(self.directory, self.plan.tag)
        directory.mkdir(parents=True, exist_ok=True)
        return f"ipc://{directory / f'{index}.ctl'}", f"ipc://{directory / f'{index}.ev'}"
