"""The Swarm backend's pure parts: slot ports, peer command lines, log filtering, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import LaunchError
from supervisor.spec import Backend, SupervisorConfig, argv_value, node_spec, signaling_spec
from supervisor.swarm import (
    NOT_MANAGER_HINT,
    PORT_BASE_ENV,
    SwarmLauncher,
    peer_ports,
    port_base_from_env,
    strip_stream_headers,
    task_lines,
    volume_template,
)


def config(**kw: Any) -> SupervisorConfig:
    return SupervisorConfig("c1", 3, Backend.SWARM, Path("/state"), **kw)


def test_slot_ports_never_collide() -> None:
    ports = [p for slot in range(1, 200) for p in peer_ports(27000, slot)]
    assert len(set(ports)) == len(ports)
    assert peer_ports(27000, 1) == (27002, 27003)


@pytest.mark.parametrize("raw", ["x", "80", "70000", "-1"])
def test_port_base_must_be_sane(raw: str) -> None:
    with pytest.raises(ValueError, match=PORT_BASE_ENV):
        port_base_from_env({PORT_BASE_ENV: raw})
    assert port_base_from_env({}) == 27000


def test_swarm_peers_get_the_key_as_a_secret_and_no_fixed_endpoints() -> None:
    cfg = config(host="198.51.100.1", ice_address="auto", ice_servers=("stun:192.0.2.9:3478",))
    spec = node_spec(cfg, 2, "ws://198.51.100.1:3000", "", "")
    assert argv_value(spec.argv, "--curve-key") == "/run/secrets/curve.key"
    assert spec.secrets == {"curve.key": "/state/c1/curve.key"}
    assert argv_value(spec.argv, "--control") is None  # from the slot, in the service
    assert argv_value(spec.argv, "--ice-address") == "auto"
    assert argv_value(spec.argv, "--ice-server") == "stun:192.0.2.9:3478"
    assert argv_value(spec.argv, "--data-dir") == "/data"
    assert argv_value(signaling_spec(cfg, 3000).argv, "--host") == "198.51.100.1"
    assert cfg.curved
    assert volume_template("c1") == "dht-c1-{{.Task.Slot}}"


def test_process_peers_get_the_host_path_only_with_secure() -> None:
    plain = SupervisorConfig("c1", 3, Backend.PROCESS, Path("/state"))
    spec = node_spec(plain, 1, "ws://127.0.0.1:3000", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2")
    assert argv_value(spec.argv, "--curve-key") is None
    assert spec.secrets == {}
    secure = SupervisorConfig("c1", 3, Backend.PROCESS, Path("/state"), secure=True)
    spec = node_spec(secure, 1, "ws://127.0.0.1:3000", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2")
    assert argv_value(spec.argv, "--curve-key") == "/state/c1/curve.key"
    assert argv_value(spec.argv, "--control") == "tcp://127.0.0.1:1"


def test_service_logs_are_demultiplexed_and_filtered_by_task() -> None:
    def frame(text: bytes) -> bytes:
        return b"\x01\0\0\0" + len(text).to_bytes(4, "big") + text

    data = frame(b"com.docker.swarm.task.id=t1,com.docker.swarm.node.id=n one\n")
    data += frame(b"com.docker.swarm.task.id=t2 two\n") + frame(b"com.docker.swarm.task.id=t1 ")
    data += frame(b"three\n")
    chunks = iter([data[:5], data[5:40], data[40:]])
    from supervisor.containers import log_lines

    assert list(task_lines(log_lines(strip_stream_headers(chunks)), {"t1"})) == ["one", "three"]


class _NotAManager:
    class api:
        @staticmethod
        def info() -> dict[str, Any]:
            return {"Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False}}


def test_an_engine_that_is_not_a_manager_is_refused_with_the_fix() -> None:
    with pytest.raises(LaunchError) as refused:
        SwarmLauncher(client=_NotAManager())
    assert "not a swarm manager (swarm state: inactive)" in str(refused.value)
    assert NOT_MANAGER_HINT in str(refused.value)
    assert "docker swarm init" in NOT_MANAGER_HINT


def test_auto_ice_addresses_are_the_hosts_own_else_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aioice.ice

    from peer.serve import ice_addresses

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda **_: ["127.0.0.1", "192.0.2.7"])
    assert ice_addresses(["auto", "192.0.2.7", "198.51.100.3"]) == ["192.0.2.7", "198.51.100.3"]
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda **_: [])
    assert ice_addresses(["auto"]) == ["127.0.0.1"]
    assert ice_addresses(["127.0.0.1"]) == ["127.0.0.1"]
