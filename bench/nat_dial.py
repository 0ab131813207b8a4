"""One side of a WebRTC dial between two lab namespaces, the SDP passed through files.

    ip netns exec NS python -m bench.nat_dial offer|answer ADDRESS DIR [--ice-server URL]...
        [--timeout S] [--dials N]

The offerer writes ``DIR/offer-<i>``, the answerer ``DIR/answer-<i>`` (written to a temporary
name, then renamed, so the reader never sees half a file); ``N`` dials run one after another.
Each dial prints one JSON line: ``{"role", "dial", "ok", "path", "setup_s", "error"}``, where
``setup_s`` runs from the offer's creation (offerer) or the offer's arrival (answerer) until the
data channel is open. Used by ``tests/integration/test_natlab_dials.py`` and
``bench/nat_lab.py``; it needs only the lab's namespaces, not a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from node.transport.base import TransportError  # noqa: E402
from node.transport.webrtc import WebRTCTransport  # noqa: E402

POLL_S = 0.01
FILE_WAIT_S = 30.0


async def _read_when_there(path: Path) -> str:
    deadline = time.monotonic() + FILE_WAIT_S
    while not os.path.exists(path):  # noqa: ASYNC240 - a local file, polled every 10 ms
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        await asyncio.sleep(POLL_S)
    with open(path) as f:  # noqa: ASYNC230 - a small local file
        return f.read()


def _publish(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def _dial(
    t: WebRTCTransport, role: str, directory: Path, i: int, timeout_s: float
) -> dict[str, Any]:
    result: dict[str, object] = {"role": role, "dial": i, "ok": False, "path": None}
    try:
        if role == "offer":
            started = time.monotonic()
            offer = await t.create_offer()
            _publish(directory / f"offer-{i}", offer.sdp)
            await offer.accept_answer(await _read_when_there(directory / f"answer-{i}"))
            link = await offer.wait_open(timeout_s)
        else:
            sdp = await _read_when_there(directory / f"offer-{i}")
            started = time.monotonic()
            answer = await t.accept_offer(sdp)
            _publish(directory / f"answer-{i}", answer.sdp)
            link = await answer.wait_open(timeout_s)
        result.update(ok=True, path=link.path, setup_s=round(time.monotonic() - started, 4))
        await asyncio.sleep(0.2)  # let the other side see the open channel before we close
        link.close()
    except (TransportError, TimeoutError) as exc:
        result["error"] = str(exc)
    return result


def dial_pair(
    offer_netns: str | None,
    offer_address: str,
    answer_netns: str | None,
    answer_address: str,
    directory: Path,
    ice_servers: list[str],
    timeout_s: float = 10.0,
    dials: int = 1,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run both sides in their namespaces (``ip netns exec``, needs root; None: this one);
    their JSON lines."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    servers = [arg for url in ice_servers for arg in ("--ice-server", url)]
    common = [str(directory), *servers, "--timeout", str(timeout_s), "--dials", str(dials)]
    procs = [
        subprocess.Popen(
            [
                *(["ip", "netns", "exec", netns] if netns else []),
                *(sys.executable, "-m", "bench.nat_dial", role, address, *common),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        for netns, role, address in (
            (offer_netns, "offer", offer_address),
            (answer_netns, "answer", answer_address),
        )
    ]
    limit_s = FILE_WAIT_S + dials * (timeout_s + 10.0)
    outputs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=limit_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        outputs.append([json.loads(line) for line in out.splitlines() if line.startswith("{")])
    return outputs[0], outputs[1]


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("offer", "answer"))
    parser.add_argument("address")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--ice-server", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--dials", type=int, default=1)
    args = parser.parse_args(argv)
    async with WebRTCTransport([args.address], args.ice_server) as transport:
        for i in range(args.dials):
            result = await _dial(transport, args.role, args.directory, i, args.timeout)
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
