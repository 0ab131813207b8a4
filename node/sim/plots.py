"""Pictures of a simulation run (``python -m node.sim --plot DIR``): PNGs through matplotlib (Agg).

Each figure is one question: how many hops lookups take, how long they take (CDF), how many
messages they cost, and — under churn — how readability and routing-table health evolve. Next to
the PNGs, ``plots.json`` lists every file with its title, axis labels and the plotted series
(the machine-readable twin; the JSON report on stdout stays the main output). The same title and
labels are written into each PNG's text chunks, so a reader can check a picture without the JSON.

matplotlib is an optional dependency (``webrtc-dht[plots]``, included in ``test`` and ``dev``):
it is imported only when plots are asked for.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLOTS_JSON = "plots.json"


@dataclass(frozen=True, slots=True)
class Figure:
    file: str
    title: str
    xlabel: str
    ylabel: str
    series: dict[str, tuple[list[float], list[float]]]  # name -> (x, y)
    kind: str = "line"  # "line", "step" (CDF) or "bar"


def _hist(values: Sequence[float]) -> tuple[list[float], list[float]]:
    counts = Counter(values)
    xs = sorted(counts)
    return [float(x) for x in xs], [float(counts[x]) for x in xs]


def _cdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    s = sorted(values)
    n = len(s)
    return [float(v) for v in s], [(i + 1) / n for i in range(n)]


def figures(lookups: dict[str, list[float]], churn: list[dict[str, Any]] | None) -> list[Figure]:
    """The figures for per-lookup ``hops``/``latency_s``/``messages`` and optional churn samples."""
    out = [
        Figure("hops.png", "Lookup hops", "hops", "lookups", {"lookups": _hist(lookups["hops"])},
               "bar"),
        Figure("latency_cdf.png", "Lookup latency (CDF)", "lookup latency (s)",
               "fraction of lookups", {"lookups": _cdf(lookups["latency_s"])}, "step"),
        Figure("messages.png", "Messages per lookup", "messages per lookup", "lookups",
               {"lookups": _hist(lookups["messages"])}, "bar"),
    ]  # fmt: skip
    if churn:
        hours = [s["t_s"] / 3600.0 for s in churn]
        out.append(
            Figure(
                "churn.png",
                "Readability and routing-table health under churn",
                "time (h)",
                "fraction",
                {
                    "keys readable": (hours, [float(s["readable"]) for s in churn]),
                    "table contacts alive": (hours, [float(s["table_alive"]) for s in churn]),
                },
            )
        )
    return out


def write(directory: str | Path, figs: list[Figure]) -> list[Path]:
    """Render ``figs`` as PNGs into ``directory`` (created) plus ``plots.json``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    index: dict[str, Any] = {}
    for f in figs:
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        for name, (xs, ys) in f.series.items():
            if f.kind == "bar":
                ax.bar(xs, ys, label=name)
            elif f.kind == "step":
                ax.step(xs, ys, where="post", label=name)
            else:
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_title(f.title)
        ax.set_xlabel(f.xlabel)
        ax.set_ylabel(f.ylabel)
        ax.grid(True, alpha=0.3)
        if len(f.series) > 1:
            ax.legend()
        path = d / f.file
        meta = {"Title": f.title, "Description": json.dumps({"x": f.xlabel, "y": f.ylabel})}
        fig.savefig(path, format="png", metadata=meta)
        plt.close(fig)
        paths.append(path)
        index[f.file] = {
            "title": f.title,
            "xlabel": f.xlabel,
            "ylabel": f.ylabel,
            "kind": f.kind,
            "series": {k: {"x": xs, "y": ys} for k, (xs, ys) in f.series.items()},
        }
    (d / PLOTS_JSON).write_text(json.dumps(index, indent=1) + "\n")
    return paths
