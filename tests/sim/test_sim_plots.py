"""``--plot DIR``: valid PNGs with the expected axes, read back from the files."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from node.sim.__main__ import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED = {
    "hops.png": ("hops", "lookups"),
    "latency_cdf.png": ("lookup latency (s)", "fraction of lookups"),
    "messages.png": ("messages per lookup", "lookups"),
    "churn.png": ("time (h)", "fraction"),
}


def read_png(path: Path) -> tuple[int, int, dict[str, str]]:
    """Width, height and text chunks; checks every chunk's CRC on the way."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    pos, width, height, text = 8, 0, 0, {}
    chunks = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(ctype + body) == crc, f"bad CRC in {ctype!r}"
        chunks.append(ctype)
        if ctype == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif ctype == b"tEXt":
            key, _, value = body.partition(b"\0")
            text[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length
    assert chunks[0] == b"IHDR"
    assert chunks[-1] == b"IEND"
    assert b"IDAT" in chunks
    return width, height, text


def test_plot_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], sim_seed: int) -> None:
    out = tmp_path / "plots"
    args = ["--nodes", "60", "--lookups", "40", "--keys", "5", "--seed", str(sim_seed),
            "--bootstrap", "oracle", "--hours", "0.5", "--churn-rate", "0.2",
            "--sample-every", "600", "--latency", "measured", "--plot", str(out)]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bootstrap"]["method"] == "oracle"
    assert sorted(Path(p).name for p in report["plots"]) == sorted(EXPECTED)
    index = json.loads((out / "plots.json").read_text())
    assert sorted(index) == sorted(EXPECTED)
    for name, (xlabel, ylabel) in EXPECTED.items():
        width, height, text = read_png(out / name)
        assert (width, height) == (640, 400)
        assert json.loads(text["Description"]) == {"x": xlabel, "y": ylabel}
        assert text["Title"] == index[name]["title"]
        assert (index[name]["xlabel"], index[name]["ylabel"]) == (xlabel, ylabel)
        for series in index[name]["series"].values():
            assert len(series["x"]) == len(series["y"]) > 0
    hops = index["hops.png"]["series"]["lookups"]
    assert sum(hops["y"]) == 40  # one bar entry per lookup
    cdf = index["latency_cdf.png"]["series"]["lookups"]["y"]
    assert cdf[-1] == 1.0
    assert cdf == sorted(cdf)
    churn = index["churn.png"]["series"]
    assert set(churn) == {"keys readable", "table contacts alive"}
    assert churn["keys readable"]["x"] == pytest.approx([0.0, 600 / 3600, 1200 / 3600, 0.5])
