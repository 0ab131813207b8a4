"""Listen with real node processes: one node listens to a key, three others write it in turn.

Each new version must reach the listener as a ``record.updated`` event within 1 s of the write
returning, in order, each exactly once. The CLI (``dhtctl listen KEY --count N``) is checked on
the same cluster. (That a dead listener stops costing pushes once its registration expires is
a sans-IO test: tests/unit/test_listen.py.)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from control.client import ControlClient, EventSubscriber
from tests.support.procs import proc_cluster

PUSH_LIMIT_S = 1.0
KEY = "watched-key"


def test_listen_sees_three_updates_from_three_other_nodes_in_order(tmp_path: Path) -> None:
    with proc_cluster(tmp_path, 5) as cluster:
        cluster.wait_formed(3, timeout_s=120)
        listener, *writers = cluster.nodes
        with EventSubscriber(listener.events, ["record.updated"]) as sub:
            reply = listener.call("listen", key=KEY)
            assert reply["new"] is True
            time.sleep(1.0)  # the listen lookup and the LISTEN registrations
            got: list[bytes] = []
            for i, writer in enumerate(writers[:3]):
                value = f"update-{i}".encode()
                with ControlClient(writer.control, timeout_s=15.0) as client:
                    client.call("store", key=KEY, value=value)
                stored = time.monotonic()
                event = sub.recv(timeout_s=PUSH_LIMIT_S)
                delay = time.monotonic() - stored
                assert event is not None, f"update {i} not pushed within {PUSH_LIMIT_S} s"
                topic, payload = event
                assert topic == "record.updated"
                assert payload["key"] == KEY
                got.append(payload["value"])
                print(f"update {i}: pushed {delay * 1000:.0f} ms after the store returned")
            assert got == [b"update-0", b"update-1", b"update-2"]
            assert sub.recv(timeout_s=1.0) is None, "an update was reported twice"
        cli = subprocess.Popen(
            [sys.executable, "-m", "control", "--endpoint", listener.control,
             "listen", KEY, "--events", listener.events, "--count", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert cli.stdout is not None
        assert cli.stdout.readline().startswith(f"listening to {KEY}")  # subscribed
        with ControlClient(writers[0].control, timeout_s=15.0) as client:
            client.call("store", key=KEY, value=b"from-the-cli-test")
        out, err = cli.communicate(timeout=30)
        assert cli.returncode == 0, err
        assert out.strip().endswith(": from-the-cli-test")
