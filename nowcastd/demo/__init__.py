"""`nowcastd demo`'s client of the daemon: a real `nowcastd serve` process, driven from outside.

- `driver`: the daemon as a subprocess (its config file, scans delivered by rename, its log,
  its events file followed, ready and stopped), which the daemon's own tests drive too;
- `metrics`: one HTTP scrape of its Prometheus endpoint and the lines a person reads from it;
- `report`: the demo's run, a line per forecast and the metrics at the end.

It sits above `serve`, whose events and metric names it reads, and below `cli`.
"""
