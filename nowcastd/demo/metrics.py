"""The daemon's metrics as its clients read them: one real HTTP scrape of the Prometheus
endpoint (`scrape`), one sample of it (`value`), and the lines a person reads from it
(`metrics_summary`: scans, rejections, forecasts, latency histogram, compilations after ready).
"""

from __future__ import annotations

import urllib.request
from typing import TypedDict

from nowcastd.serve.metrics import STAGES

__all__ = ["Families", "metrics_summary", "ready_compilations", "scrape", "value"]

#: One sample of a scrape: its name, labels and value.
Sample = tuple[str, dict[str, str], float]


class Family(TypedDict):
    """One metric family of a scrape: its Prometheus type and samples."""

    type: str
    samples: list[Sample]


#: A scrape, by family name.
Families = dict[str, Family]


def scrape(url: str, *, timeout_seconds: float = 5.0) -> Families:
    """One HTTP scrape: {family name: {"type": ..., "samples": [(name, labels, value)]}}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
        text = response.read().decode("utf-8")
    return {
        family.name: {
            "type": family.type,
            "samples": [(s.name, dict(s.labels), float(s.value)) for s in family.samples],
        }
        for family in text_string_to_metric_families(text)
    }


def value(families: Families, sample: str, **labels: str) -> float | None:
    """The value of one sample in a scrape (None if absent)."""
    for family in families.values():
        for name, sample_labels, value in family["samples"]:
            if name == sample and all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
    return None


def _total(families: Families, sample: str) -> float:
    return sum(
        value
        for family in families.values()
        for name, _, value in family["samples"]
        if name == sample
    )


def _samples(families: Families, family: str) -> list[Sample]:
    """The samples of one family ([] if absent)."""
    found = families.get(family)
    return [] if found is None else found["samples"]


def _buckets(families: Families, family: str, **labels: str) -> list[tuple[float, float]]:
    samples = _samples(families, family)
    return [
        (float(lab["le"]), value)
        for name, lab, value in samples
        if name == f"{family}_bucket" and all(lab.get(k) == v for k, v in labels.items())
    ]


def _upper_bound(q: float, buckets: list[tuple[float, float]]) -> float:
    """The upper bound of the bucket holding quantile `q` (what the histogram can say)."""
    total = buckets[-1][1] if buckets else 0.0
    for upper, count in buckets:
        if total and count >= q * total:
            return upper
    return float("nan")


def _bound(seconds: float) -> str:
    return "—" if seconds != seconds else f"{seconds:g} s"


def _ms(seconds: float) -> str:
    return "—" if seconds != seconds else f"{1e3 * seconds:.0f} ms"


def metrics_summary(families: Families, *, compilations_at_ready: float) -> list[str]:
    """What a person reads from one scrape of the daemon's metrics."""
    received = value(families, "nowcastd_scans_received_total") or 0
    rejected = {
        labels["reason"]: value
        for name, labels, value in _samples(families, "nowcastd_scans_rejected")
        if name == "nowcastd_scans_rejected_total" and value
    }
    written = value(families, "nowcastd_forecasts_written_total") or 0
    skipped = value(families, "nowcastd_scans_skipped_total") or 0
    failures = _total(families, "nowcastd_failures_total")
    compilations = value(families, "nowcastd_jit_compilations_total") or 0
    latency = "nowcastd_forecast_latency_seconds"
    count = value(families, f"{latency}_count") or 0
    mean = (value(families, f"{latency}_sum") or 0) / count if count else float("nan")
    buckets = sorted(_buckets(families, latency))
    quantiles = ", ".join(
        f"p{round(100 * q)} ≤ {_bound(_upper_bound(q, buckets))}" for q in (0.5, 0.9, 0.99)
    )
    stages = []
    for stage in STAGES:
        n = value(families, "nowcastd_stage_duration_seconds_count", stage=stage) or 0
        total = value(families, "nowcastd_stage_duration_seconds_sum", stage=stage) or 0
        if n:
            stages.append(f"{stage} {_ms(total / n)}")
    rejected_text = ", ".join(f"{k} {v:g}" for k, v in rejected.items()) or "none"
    return [
        f"scans received {received:g} (rejected: {rejected_text}; skipped {skipped:g}), "
        f"forecasts written {written:g}, failures {failures:g}",
        f"forecast latency, scan event to file (n={count:g}): mean {_ms(mean)}, {quantiles} "
        "(histogram buckets)",
        "mean per stage: " + (", ".join(stages) or "none"),
        f"XLA compilations: {compilations_at_ready:g} at start-up, "
        f"{compilations - compilations_at_ready:g} after ready",
    ]


def ready_compilations(families: Families) -> float:
    """`nowcastd_jit_compilations_total` in a scrape (0 if absent)."""
    return value(families, "nowcastd_jit_compilations_total") or 0.0
