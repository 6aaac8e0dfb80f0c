"""Strategy by measurement: each compiled program's `model.strategy.Strategy`, timed on the
machine that runs it at first use, the fastest kept and cached on disk (`search`, `cache`)."""
