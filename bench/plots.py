"""
The sweep's plots: each figure of report.SWEEP_FIGURES against the number of streams,
one line per target, as PNG files (matplotlib, no display needed).
"""

from pathlib import Path
from typing import Any

from bench.report import LABELS, SWEEP_FIGURES, sweep_series

# Colour and marker by target, so that lines on top of one another still show.
STYLES = {
    "peer": {"color": "tab:blue", "marker": "o"},
    "node_peer": {"color": "tab:green", "marker": "s"},
    "project": {"color": "tab:red", "marker": "^"},
}
FILES = {"active": "sweep-active.png", "quiet": "sweep-quiet.png"}
TITLES = {
    "active": "streams at 20 tokens/s, all active at once",
    "quiet": "quiet open streams (heartbeats only)",
}


def draw(records: list[dict[str, Any]], directory: Path) -> list[Path]:
    """Draw the sweep's levels found in `records` into `directory`; return the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    meta = next(iter(records), {})
    caption = (
        f"{meta.get('commit', '')}, {meta.get('date', '')[:10]}, scale {meta.get('scale', '')}, "
        f"{meta.get('database', 'sqlite')}; {meta.get('machine', '')}"
    )
    written = []
    for kind, figures in SWEEP_FIGURES.items():
        if not sweep_series(records, kind, figures[0][1])[0]:
            continue
        fig, axes = plt.subplots(1, len(figures), figsize=(5 * len(figures), 4.2))
        for ax, (label, key, unit, log) in zip(axes, figures, strict=True):
            levels, series = sweep_series(records, kind, key)
            if key == "open_streams":
                ax.plot(levels, levels, ls="--", color="grey", lw=1, label="asked")
            for name, values in series.items():
                points = [(x, y) for x, y in zip(levels, values, strict=True) if y is not None]
                if points:
                    style = STYLES.get(name, {"marker": "o"})
                    ax.plot(*zip(*points, strict=True), label=LABELS.get(name, name), **style)
            ax.set_title(label)
            ax.set_xlabel(f"{kind} streams")
            ax.set_ylabel(unit or label)
            ax.set_xticks(levels)
            if log:
                ax.set_yscale("log")
            else:
                ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
        fig.suptitle(f"Cost as work grows: {TITLES[kind]}")
        fig.text(0.5, 0.01, caption, ha="center", fontsize="x-small", color="grey")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        path = directory / FILES[kind]
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
