"""Two Docker hosts on one machine, joined into one swarm (root only).

Each *host* is a network namespace with its own ``dockerd`` (own data root, exec root, socket and
UTS namespace, so its own hostname); a veth pair links them with addresses from the
documentation range 198.51.100.0/24, which exist only inside the two namespaces. Host A's engine
is the swarm manager (``--advertise-addr 198.51.100.1``), host B's joins as a worker; the project
image is copied into both with ``docker save`` / ``docker load`` (no registry). ``dockerd`` is
started with ``nsenter --net`` rather than ``ip netns exec``, which would remount ``/sys`` and
hide the cgroup hierarchy dockerd needs.

Everything is removed on exit, best effort and in order: the swarm is left, both engines are
stopped, any process still inside the namespaces (ours) is killed, the engines' leftover mounts
under the lab directory and the lab's tmpfs are unmounted, the namespaces (and with them the
veth pair) are deleted and the lab directory is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import command_lines

NETWORK = "198.51.100"
TOOLS = ("ip", "nsenter", "unshare", "dockerd", "docker", "mount", "umount")
ENGINE_START_S = 60.0
ENGINE_STOP_S = 3.0  # then everything left in the namespace is killed (dockerd lingers ~30 s)
IMAGE = "webrtc-dht:latest"
TMPFS_SIZE = "3g"  # two copies of the ~300 MB image, the image tar and the containers


def missing_requirements() -> str | None:
    """Why the lab cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "the two-host swarm lab needs root (network namespaces, dockerd)"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"the two-host swarm lab needs {', '.join(absent)}"
    return None


def _run(argv: Sequence[str], timeout_s: float = 60.0, check: bool = True) -> str:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    name: str  # the hostname inside its UTS namespace
    netns: str
    address: str
    root: Path
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> str:
        return f"unix://{self.root}/docker.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "dockerd.pid"

    def nsenter(self) -> list[str]:
        return ["nsenter", f"--net=/var/run/netns/{self.netns}"]

    def docker(self, *args: str, timeout_s: float = 120.0, check: bool = True) -> str:
        return _run(["docker", "-H", self.sock, *args], timeout_s, check)

    def start_engine(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        dockerd = (
            f"hostname {self.name} && exec dockerd --data-root {self.root}/data "
            f"--exec-root {self.root}/exec --pidfile {self.pid_file} -H {self.sock} "
            "--bridge=none --iptables=false --storage-driver=overlay2 --shutdown-timeout 2"
        )
        log = (self.root / "dockerd.log").open("ab")
        self._proc = subprocess.Popen(
            [*self.nsenter(), "unshare", "--uts", "sh", "-c", dockerd],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + ENGINE_START_S
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.docker("info", "--format", "{{.ID}}", timeout_s=5)
                return
            time.sleep(0.3)
        tail = (self.root / "dockerd.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"dockerd of {self.name} did not answer:\n{tail}")

    def stop_engine(self) -> None:
        """Stop the host as a host goes down: SIGTERM dockerd (it stops its containers), and
        after ``ENGINE_STOP_S`` SIGKILL whatever still runs in the host's namespace (dockerd,
        containerd, shims, the containers' processes: all ours)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(ENGINE_STOP_S)
        self.kill_all()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(ENGINE_STOP_S)
        self._proc = None

    def kill_all(self) -> None:
        """SIGKILL every process in the host's network namespace."""
        pids = _run(["ip", "netns", "pids", self.netns], check=False).split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


class TwoHosts:
    """``with TwoHosts(image_source_env) as lab: lab.a, lab.b`` (see the module docstring)."""

    def __init__(self, image_source: Mapping[str, str] | None = None) -> None:
        tag = f"dsw{os.getpid() % 100000}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
        self.a = Host(f"{tag}-a", f"{tag}-a", f"{NETWORK}.1", self.dir / "a")
        self.b = Host(f"{tag}-b", f"{tag}-b", f"{NETWORK}.2", self.dir / "b")
        self._veth = (f"{tag}va", f"{tag}vb")
        self._image_env = dict(image_source or os.environ)

    def __enter__(self) -> TwoHosts:
        try:
            # Both engines' data on a tmpfs: loading the image is quicker and removing the two
            # data roots (~40k files each) is an unmount instead of a minute of unlinking.
            _run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "dsw-lab", str(self.dir)])
            self._network()
            for host in (self.a, self.b):
                host.start_engine()
            self._swarm()
            self._image()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _network(self) -> None:
        a, b = self.a, self.b
        va, vb = self._veth
        for host in (a, b):
            _run(["ip", "netns", "add", host.netns])
        _run(["ip", "link", "add", va, "type", "veth", "peer", "name", vb])
        for host, veth in ((a, va), (b, vb)):
            _run(["ip", "link", "set", veth, "netns", host.netns])
            _run(["ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", veth])
            _run(["ip", "-n", host.netns, "link", "set", veth, "up"])
            _run(["ip", "-n", host.netns, "link", "set", "lo", "up"])

    def _swarm(self) -> None:
        a, b = self.a, self.b
        a.docker("swarm", "init", "--advertise-addr", a.address, "--listen-addr", a.address)
        token = a.docker("swarm", "join-token", "-q", "worker").strip()
        b.docker(
            "swarm", "join", "--token", token, "--advertise-addr", b.address,
            "--listen-addr", b.address, f"{a.address}:2377",
        )  # fmt: skip

    def _image(self) -> None:
        tar = self.dir / "image.tar"
        source = ["docker"]
        if self._image_env.get("DOCKER_HOST"):
            source += ["-H", self._image_env["DOCKER_HOST"]]
        _run([*source, "save", "-o", str(tar), IMAGE], timeout_s=300)
        loads = [
            subprocess.Popen(
                ["docker", "-H", host.sock, "load", "-q", "-i", str(tar)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for host in (self.a, self.b)
        ]
        for proc in loads:
            _, err = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"docker load failed: {err.decode(errors='replace')}")
        tar.unlink()

    def run_on_a(
        self, argv: Sequence[str], env: Mapping[str, str], timeout_s: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` inside host A's network namespace (where the supervisor runs)."""
        return subprocess.run(
            [*self.a.nsenter(), *argv],
            env={**env, "DOCKER_HOST": self.a.sock},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def _mounts(self) -> list[str]:
        """Mount points at or below the lab directory."""
        lines = Path("/proc/mounts").read_text().splitlines()
        return [m for m in (line.split()[1] for line in lines) if m.startswith(str(self.dir))]

    def leftovers(self) -> list[str]:
        """What ``close`` should have removed and did not: namespaces, veths in the root
        namespace, processes of either engine (anything naming the lab directory), mounts, the
        directory itself. Empty after a clean ``close``."""
        left: list[str] = []
        netns = _run(["ip", "netns", "list"], check=False).split()
        left += [f"netns {h.netns}" for h in (self.a, self.b) if h.netns in netns]
        links = _run(["ip", "-o", "link", "show"], check=False)
        left += [f"veth {v}" for v in self._veth if f" {v}@" in links or f" {v}:" in links]
        left += [
            f"process {pid}: {args[:80]}" for pid, args in command_lines() if str(self.dir) in args
        ]
        left += [f"mount {m}" for m in self._mounts()]
        if self.dir.exists():
            left.append(f"directory {self.dir}")
        return left

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.a.docker("swarm", "leave", "--force", timeout_s=30, check=False)
        for host in (self.a, self.b):
            with contextlib.suppress(Exception):
                host.stop_engine()
        for host in (self.a, self.b):
            with contextlib.suppress(Exception):
                host.kill_all()  # only what we started lives in our namespaces
        with contextlib.suppress(OSError):
            for mount in sorted(self._mounts(), key=len, reverse=True):
                _run(["umount", "-l", mount], check=False)
        for host in (self.a, self.b):
            _run(["ip", "netns", "del", host.netns], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
