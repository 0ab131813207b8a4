"""The NAT lab: network namespaces, nftables NAT and a coturn STUN/TURN server on one machine.

Topology (documentation address ranges only, and only inside namespaces the lab creates)::

    wan namespace   bridge "wan" 203.0.113.1/24: the signaling server and coturn listen here
      |-- NAT namespace i:  wan0 203.0.113.(10+i)/24  (nftables masquerade out of wan0)
      |     `-- home namespace i:  eth0 198.51.100.(4i+2)/30, default route via .(4i+1)
      `-- wan peer j (a home namespace straight on the wan): eth0 203.0.113.(100+j)/24

Each peer lives alone in its home namespace. Homes are numbered subnets of 198.51.100.0/24 and
NAT namespaces have no default route, so a packet to another home's private address is dropped
(as on the internet) and peers meet only through their NATs' public addresses or the relay.

NAT kinds (``NatKind``):

* ``eim`` -- ``masquerade``: Linux keeps the source port when it can, so one socket gets one
  public address whatever the destination (endpoint-independent mapping). Filtering is the
  conntrack rule (address-and-port dependent): hole punching works because both sides send.
* ``symmetric`` -- ``masquerade fully-random``: every new destination gets a random public
  port, so the address coturn reports (srflx) is useless to anyone else: only relay works.
* ``wan`` -- no NAT: the peer's host address is public.

coturn runs in the wan namespace with per-lab credentials (``turn_user``/``turn_password``,
random) or, with ``turn=False``, as a STUN-only server (what "no TURN" means for the tests).

Ownership and clean-up: the lab writes ``lab.json`` into its directory *before* it creates
anything, naming every namespace and the coturn pid. ``teardown(directory)`` works from any
process (``orchestrate.py down``): it stops coturn and every process still inside the lab's
namespaces, then deletes the namespaces (their veths go with them). It never touches the root
namespace's interfaces or nftables ruleset. Building needs root (CAP_NET_ADMIN), ``ip``
(iproute2), ``nft`` and ``turnserver`` (coturn).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.errors import LaunchError
from supervisor.spec import LabOptions
from supervisor.state import proc_running, write_json_atomic

log = logging.getLogger(__name__)

LAB_FILE = "lab.json"
COTURN_LOG = "coturn.log"
WAN_ADDRESS = "203.0.113.1"
WAN_PREFIX = 24
HOMES_NETWORK = "198.51.100.0/24"
SINK_GATEWAY = "203.0.113.254"  # nobody has it: see _blackhole_homes
SINK_MAC = "02:00:00:00:00:fe"
TURN_PORT = 3478
SIGNALING_PORT = 3000
RELAY_PORTS = (49152, 65535)
MAX_NAT_PEERS = 63  # 198.51.100.0/24 cut into /30 homes, numbered 1..63
MAX_WAN_PEERS = 150  # 203.0.113.101..250
COMMAND_TIMEOUT_S = 10.0
COTURN_READY_S = 10.0
KILL_WAIT_S = 3.0
TOOLS = ("ip", "nft", "turnserver")
IPC_DIR = "ipc"
#: Longest ipc:// socket directory (a Unix socket path holds 107 bytes; "/12.ctl" follows).
MAX_IPC_DIR_CHARS = 96


class NatKind(enum.StrEnum):
    EIM = "eim"
    SYMMETRIC = "symmetric"
    WAN = "wan"


NAT_MODES = ("eim", "symmetric", "mix")
NAT_HELP = "NAT per peer: eim, symmetric, mix (alternating) or a comma list of eim/symmetric/wan."


def parse_kinds(spec: str, peers: int) -> list[NatKind]:
    """The NAT kind of each of ``peers`` peers from ``--nat``: ``eim``, ``symmetric``, ``mix``
    (alternating, EIM first) or a comma list with one kind per peer (``eim,symmetric,wan``)."""
    spec = spec.strip().lower()
    if spec == "mix":
        return [NatKind.EIM if i % 2 == 0 else NatKind.SYMMETRIC for i in range(peers)]
    if spec in (NatKind.EIM, NatKind.SYMMETRIC, NatKind.WAN):
        return [NatKind(spec)] * peers
    parts = [p.strip() for p in spec.split(",")]
    try:
        kinds = [NatKind(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"--nat {spec!r}: use eim, symmetric, mix or a comma list of eim/symmetric/wan"
        ) from None
    if len(kinds) != peers:
        raise ValueError(f"--nat lists {len(kinds)} kinds for {peers} peers")
    return kinds


def lab_options(lab: str, nat: str, turn: bool, peers: int) -> LabOptions | None:
    """``--lab``/``--nat``/``--turn`` checked: None without a lab; ValueError for bad values."""
    if not lab:
        return None
    if lab != "nat":
        raise ValueError(f"--lab {lab!r}: the only lab is 'nat'")
    parse_kinds(nat, peers)
    return LabOptions(nat, turn)


@dataclass(frozen=True, slots=True)
class LabHost:
    """Where peer ``index`` runs: its namespace and the address ICE gathers on."""

    index: int
    kind: NatKind
    netns: str
    address: str  # the host address inside ``netns``
    public: str  # the address the wan sees (its NAT's, or ``address`` on the wan)
    nat_netns: str | None


@dataclass(frozen=True, slots=True)
class LabPlan:
    """Everything a lab is made of (pure: computed, then built by ``build``)."""

    tag: str
    hosts: tuple[LabHost, ...]
    turn: bool = True

    @property
    def wan_netns(self) -> str:
        return f"dhtlab-{self.tag}-wan"

    @property
    def namespaces(self) -> list[str]:
        names = [self.wan_netns]
        for host in self.hosts:
            if host.nat_netns:
                names.append(host.nat_netns)
            names.append(host.netns)
        return names

    def host(self, index: int) -> LabHost:
        for host in self.hosts:
            if host.index == index:
                return host
        raise KeyError(f"no lab host for peer {index}")


def lab_tag(directory: Path) -> str:
    """A short tag unique to one cluster directory (namespace names must not collide)."""
    return hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:8]


def plan(tag: str, kinds: Sequence[NatKind], turn: bool = True) -> LabPlan:
    """Number the peers 1..N in order of ``kinds`` and give each its namespace and addresses."""
    nat_count = sum(1 for k in kinds if k is not NatKind.WAN)
    wan_count = len(kinds) - nat_count
    if nat_count > MAX_NAT_PEERS or wan_count > MAX_WAN_PEERS:
        raise ValueError(
            f"the NAT lab holds at most {MAX_NAT_PEERS} peers behind NATs "
            f"and {MAX_WAN_PEERS} on the wan"
        )
    hosts: list[LabHost] = []
    nat_i = wan_j = 0
    for index, kind in enumerate(kinds, start=1):
        netns = f"dhtlab-{tag}-h{index}"
        if kind is NatKind.WAN:
            wan_j += 1
            address = f"203.0.113.{100 + wan_j}"
            hosts.append(LabHost(index, kind, netns, address, address, None))
        else:
            nat_i += 1
            hosts.append(
                LabHost(
                    index,
                    kind,
                    netns,
                    f"198.51.100.{4 * nat_i + 2}",
                    f"203.0.113.{10 + nat_i}",
                    f"dhtlab-{tag}-n{index}",
                )
            )
    return LabPlan(tag, tuple(hosts), turn)


def nat_ruleset(kind: NatKind) -> str:
    """The nftables ruleset of a NAT namespace (loaded with ``nft -f`` inside it).

    Unsolicited packets to the NAT itself are dropped in ``input``: a dropped packet leaves no
    conntrack entry behind. Without that, a peer's first hole-punching packet (arriving before
    our own went out) would create an entry whose reply tuple is the mapping our host is about
    to use, and masquerade would then pick another port: the mapping would stop being
    endpoint-independent exactly when two peers punch at once."""
    flags = " fully-random" if kind is NatKind.SYMMETRIC else ""
    return (
        "table ip dhtlab {\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    oifname "wan0" masquerade{flags}\n'
        "  }\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy drop;\n"
        "    ct state established,related accept\n"
        '    iifname { "lo", "lan0" } accept\n'
        "  }\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy drop;\n"
        "    ct state established,related accept\n"
        '    iifname "lan0" oifname "wan0" accept\n'
        "  }\n"
        "}\n"
    )


# --- running commands ---------------------------------------------------------------------------


def run_cmd(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LaunchError(f"NAT lab: {' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise LaunchError(f"NAT lab: {' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def can_build() -> str | None:
    """None when this process can build a lab, else the reason it cannot."""
    missing = missing_tools()
    if missing:
        return f"the NAT lab needs {', '.join(missing)} (apt install iproute2 nftables coturn)"
    if os.geteuid() != 0:
        return "the NAT lab needs root (network namespaces and nftables)"
    return None


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns`` (``ip netns exec`` enters it, then execs: same pid)."""
    return ["ip", "netns", "exec", netns, *argv]


# --- the lab ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lab:
    """A built lab: its plan, its directory and the ICE servers its peers use."""

    plan: LabPlan
    directory: Path
    turn_user: str
    turn_password: str
    coturn_pid: int | None

    @property
    def stun_url(self) -> str:
        return f"stun:{WAN_ADDRESS}:{TURN_PORT}"

    @property
    def turn_url(self) -> str:
        return f"turn:{self.turn_user}:{self.turn_password}@{WAN_ADDRESS}:{TURN_PORT}"

    @property
    def ice_servers(self) -> list[str]:
        return [self.stun_url, self.turn_url] if self.plan.turn else [self.stun_url]

    def stop_turn(self) -> None:
        """Stop coturn now (tests: what peers do when the TURN server is gone)."""
        stop_turn(self.directory)


def _lab_record(lab_plan: LabPlan, coturn_pid: int | None, user: str) -> dict[str, Any]:
    return {
        "tag": lab_plan.tag,
        "namespaces": lab_plan.namespaces,
        "coturn_pid": coturn_pid,
        "turn": lab_plan.turn,
        "turn_user": user,
        "hosts": [
            {"index": h.index, "kind": str(h.kind), "netns": h.netns, "address": h.address}
            for h in lab_plan.hosts
        ],
    }


def build(lab_plan: LabPlan, directory: Path) -> Lab:
    """Create the namespaces, links, NAT rules and coturn; on any failure remove it all."""
    reason = can_build()
    if reason is not None:
        raise LaunchError(reason)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    user = f"lab{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    write_json_atomic(directory / LAB_FILE, _lab_record(lab_plan, None, user))
    try:
        _build_network(lab_plan)
        pid = _start_coturn(lab_plan, directory, user, password)
        write_json_atomic(directory / LAB_FILE, _lab_record(lab_plan, pid, user))
    except BaseException:
        teardown(directory)
        raise
    return Lab(lab_plan, directory, user, password, pid)


def _ip(netns: str, *args: str) -> None:
    run_cmd(["ip", "-n", netns, *args])


def _build_network(lab_plan: LabPlan) -> None:
    wan = lab_plan.wan_netns
    for netns in lab_plan.namespaces:
        run_cmd(["ip", "netns", "add", netns])
        _ip(netns, "link", "set", "lo", "up")
    _ip(wan, "link", "add", "wan", "type", "bridge")
    _ip(wan, "addr", "add", f"{WAN_ADDRESS}/{WAN_PREFIX}", "dev", "wan")
    _ip(wan, "link", "set", "wan", "up")
    _blackhole_homes(wan, "wan")
    for host in lab_plan.hosts:
        port = f"p{host.index}"
        if host.nat_netns is None:
            _veth(wan, port, host.netns, "eth0")
            _ip(host.netns, "addr", "add", f"{host.address}/{WAN_PREFIX}", "dev", "eth0")
        else:
            nat = host.nat_netns
            _veth(wan, port, nat, "wan0")
            _ip(nat, "addr", "add", f"{host.public}/{WAN_PREFIX}", "dev", "wan0")
            _ip(nat, "link", "set", "wan0", "up")
            run_cmd(["ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            run_cmd(["ip", "netns", "exec", nat, "nft", "-f", "-"], stdin=nat_ruleset(host.kind))
            _veth(nat, "lan0", host.netns, "eth0")
            gateway = _offset(host.address, -1)
            _ip(nat, "addr", "add", f"{gateway}/30", "dev", "lan0")
            _ip(nat, "link", "set", "lan0", "up")
            _ip(host.netns, "addr", "add", f"{host.address}/30", "dev", "eth0")
        _ip(wan, "link", "set", port, "master", "wan")
        _ip(wan, "link", "set", port, "up")
        _ip(host.netns, "link", "set", "eth0", "up")
        if host.nat_netns is not None:
            _ip(host.netns, "route", "add", "default", "via", _offset(host.address, -1))
            _blackhole_homes(host.nat_netns, "wan0")
        else:
            _blackhole_homes(host.netns, "eth0")


def _blackhole_homes(netns: str, dev: str) -> None:
    """Send packets for other homes' private addresses nowhere, silently, as the internet does.

    They are routed on the wan to a gateway that does not exist (a permanent neighbour entry
    with an unused MAC address): the frames are flooded and dropped, and the send succeeds. No
    route, or a ``blackhole`` route, would fail the send (ENETUNREACH, EINVAL), and coturn stops
    relaying on an allocation once a send to one of its peers failed; ICE tries every
    candidate the other side offers, private host addresses included."""
    _ip(netns, "neigh", "add", SINK_GATEWAY, "lladdr", SINK_MAC, "dev", dev, "nud", "permanent")
    _ip(netns, "route", "add", HOMES_NETWORK, "via", SINK_GATEWAY, "dev", dev)


def _veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair created straight inside two lab namespaces (never in the root namespace)."""
    run_cmd(
        ["ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", name_b, "netns", ns_b]
    )


def _offset(address: str, delta: int) -> str:
    head, _, last = address.rpartition(".")
    return f"{head}.{int(last) + delta}"


def _start_coturn(lab_plan: LabPlan, directory: Path, user: str, password: str) -> int:
    argv = [
        "turnserver",
        "-n",  # no configuration file
        "--listening-ip",
        WAN_ADDRESS,
        "--listening-port",
        str(TURN_PORT),
        "--realm",
        "dhtlab",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-tcp-relay",
        "--fingerprint",
        "--log-file",
        "stdout",
        "--simple-log",
        "--pidfile",
        str(directory / "coturn.pid"),
        "--userdb",
        str(directory / "coturn.db"),
    ]
    if lab_plan.turn:
        argv += [
            "--lt-cred-mech",
            "--user",
            f"{user}:{password}",
            "--relay-ip",
            WAN_ADDRESS,
            "--min-port",
            str(RELAY_PORTS[0]),
            "--max-port",
            str(RELAY_PORTS[1]),
        ]
    else:
        argv += ["--stun-only"]
    log_path = directory / COTURN_LOG
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            in_netns(lab_plan.wan_netns, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + COTURN_READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(f"coturn exited with {proc.returncode}; see {log_path}")
        if _udp_listening(lab_plan.wan_netns, TURN_PORT):
            return proc.pid
        time.sleep(0.05)
    raise LaunchError(f"coturn did not listen on {WAN_ADDRESS}:{TURN_PORT}; see {log_path}")


def _udp_listening(netns: str, port: int) -> bool:
    out = run_cmd(["ip", "netns", "exec", netns, "ss", "-Hlun", f"sport = :{port}"], check=False)
    return bool(out.strip())


# --- teardown -----------------------------------------------------------------------------------


def _kill_pid(pid: int) -> None:
    """SIGTERM, then SIGKILL; only ever a pid the lab itself recorded or found in its netns."""
    for sig, wait_s in ((signal.SIGTERM, KILL_WAIT_S), (signal.SIGKILL, KILL_WAIT_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not proc_running(pid):
                return
            time.sleep(0.02)


def _netns_pids(netns: str) -> list[int]:
    out = run_cmd(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def existing_namespaces() -> set[str]:
    out = run_cmd(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def read_record(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(directory) / LAB_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def stop_turn(directory: Path) -> bool:
    """Stop the coturn of the lab in ``directory`` (the lab stays); False when none ran."""
    record = read_record(directory)
    pid = record.get("coturn_pid") if record is not None else None
    if not isinstance(pid, int) or not proc_running(pid):
        return False
    _kill_pid(pid)
    return True


def ipc_directory(directory: Path, tag: str) -> Path:
    """Where the lab's peers put their ``ipc://`` sockets: ``directory/ipc``, or a short
    ``/tmp/dhtlab-<tag>`` when that path would be too long for a Unix socket."""
    preferred = Path(directory) / IPC_DIR
    if len(str(preferred)) <= MAX_IPC_DIR_CHARS:
        return preferred
    return Path(tempfile.gettempdir()) / f"dhtlab-{tag}"


def teardown(directory: Path) -> bool:
    """Remove the lab recorded in ``directory`` (idempotent); False when there was none."""
    record = read_record(directory)
    if record is None:
        return False
    tag = str(record.get("tag", ""))
    if tag:
        shutil.rmtree(Path(tempfile.gettempdir()) / f"dhtlab-{tag}", ignore_errors=True)
    pid = record.get("coturn_pid")
    if isinstance(pid, int) and proc_running(pid):
        _kill_pid(pid)
    recorded = {str(n) for n in record.get("namespaces", []) if isinstance(n, str)}
    ours = {n for n in existing_namespaces() if tag and n.startswith(f"dhtlab-{tag}-")}
    for netns in sorted(recorded | ours):
        if netns not in existing_namespaces():
            continue
        for member in _netns_pids(netns):
            _kill_pid(member)
        run_cmd(["ip", "netns", "del", netns], check=False)
    left = {n for n in existing_namespaces() if n in recorded or n in ours}
    if left:
        raise LaunchError(f"NAT lab: could not delete namespaces {sorted(left)}")
    with contextlib.suppress(OSError):
        (Path(directory) / LAB_FILE).unlink()
    return True
