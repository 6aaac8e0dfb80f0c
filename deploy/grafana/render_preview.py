"""Draw the Grafana dashboard's panels (deploy/grafana/nowcastd.json) from a live Prometheus with
matplotlib: every target of every panel, queried over the HTTP API as Grafana would.

    python deploy/grafana/render_preview.py --prometheus http://127.0.0.1:9090 --minutes 360
    python deploy/grafana/render_preview.py            # runs its own daemon and Prometheus

Without `--prometheus` it starts a real `nowcastd serve` (the tests' tiny model, 1 s scrapes)
and a real Prometheus on 127.0.0.1, feeds the daemon `--scans` scans one every `--every`
seconds (with a damaged file and the watch directory removed for a while on the way), and
draws the last minutes. That is how deploy/grafana/preview.png is made. Prints one line per
panel: its series and points.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from tests.deploy.prometheus import DASHBOARD, PrometheusAPI, dashboard_queries  # noqa: E402

HERE = Path(__file__).resolve().parent


def _panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def render(
    prometheus: PrometheusAPI, *, start: float, end: float, rate_window: str, out: Path
) -> list[str]:
    """The panels over `start`..`end` (unix s) into `out`; one summary line per panel."""
    queries = dashboard_queries()
    titles = list(dict.fromkeys(q.panel for q in queries))
    units = {p["title"]: p["fieldConfig"]["defaults"].get("unit") for p in _panels()}
    step = max((end - start) / 240, 1.0)
    rows = (len(titles) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(14, 4.0 * rows), squeeze=False)
    lines = []
    for ax, title in zip(axes.flat, titles, strict=False):
        series = points = 0
        for query in (q for q in queries if q.panel == title):
            expr = query.promql(window=rate_window)
            for result in prometheus.query_range(expr, start=start, end=end, step=step):
                times = [datetime.fromtimestamp(float(t), UTC) for t, _ in result["values"]]
                values = [float(v) for _, v in result["values"]]
                ax.plot(times, values, label=query.label(result["metric"]), lw=1.2)
                series += 1
                points += len(values)
        ax.set_title(title, fontsize=10, loc="left")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if units[title] == "s":
            ax.set_ylabel("seconds", fontsize=8)
        if series:  # below the plot, as Grafana places it
            ax.legend(
                fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.12), ncol=4, frameon=False
            )
        lines.append(f"panel {title!r}: {series} series, {points} points")
    for ax in axes.flat[len(titles) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"nowcastd dashboard, from {prometheus.url} "
        f"({datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M} to "
        f"{datetime.fromtimestamp(end, UTC):%H:%M} UTC; rate window {rate_window})",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return lines


def _own_stack(root: Path, *, scans: int, every: float):
    """Run a daemon and Prometheus and feed them; returns the stack and the feed's start."""
    from tests.deploy.stack import LiveStack

    stack = LiveStack(root, scans=scans).__enter__()
    start = time.time()
    gone_at, back_at = scans // 2, scans // 2 + max(int(20 / every), 1)
    for i in range(scans):
        if i == gone_at:
            shutil.rmtree(stack.daemon.incoming)  # the watch directory vanishes for a while
        if i == back_at:
            stack.daemon.incoming.mkdir()
        if gone_at <= i < back_at:
            time.sleep(every)
            continue
        stack.deliver(i)
        if i % 10 == 5:
            stack.deliver_damaged(i)
        time.sleep(every)
    time.sleep(3.0)
    return stack, start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", help="URL of a live Prometheus (default: run our own)")
    parser.add_argument("--minutes", type=float, default=60.0, help="time range with --prometheus")
    parser.add_argument("--rate-window", default="1m", help="what $__rate_interval becomes")
    parser.add_argument("--scans", type=int, default=90, help="scans fed without --prometheus")
    parser.add_argument("--every", type=float, default=1.5, help="seconds between those scans")
    parser.add_argument("--out", type=Path, default=HERE / "preview.png")
    args = parser.parse_args()
    if args.prometheus:
        end = time.time()
        lines = render(
            PrometheusAPI(args.prometheus),
            start=end - 60 * args.minutes,
            end=end,
            rate_window=args.rate_window,
            out=args.out,
        )
    else:
        with tempfile.TemporaryDirectory(prefix="nowcastd-preview-") as tmp:
            stack, start = _own_stack(Path(tmp), scans=args.scans, every=args.every)
            try:
                lines = render(
                    stack.prometheus,
                    start=start,
                    end=time.time(),
                    rate_window=args.rate_window,
                    out=args.out,
                )
            finally:
                stack.close()
    print("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
