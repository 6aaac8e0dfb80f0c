"""`nowcastd serve --strategy auto`: a real daemon times its programs' strategies at its first
start, logs each choice, caches it beside the compile cache, and reads it back on a restart."""

import signal

from nowcastd.io.model_checkpoint import save_inference_checkpoint
from nowcastd.io.transform import DataTransform
from nowcastd.strategy.machine import cpu_model
from tests.nowcastd.serve.daemon import Daemon
from tests.nowcastd.serve.tiny import tiny_network


def _strategy_lines(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log_text().splitlines() if "strategy for serve" in line]


def test_daemon_measures_its_strategies_once_and_restarts_from_the_cache(tmp_path):
    save_inference_checkpoint(tmp_path / "ckpt", tiny_network(size=32), DataTransform(kind="dbz"))
    # the cache beside the compile cache, not the tests' own
    daemon = Daemon(
        tmp_path, env={"NOWCASTD_STRATEGY_CACHE": "", "NOWCASTD_SERVE_STRATEGY": "auto"}
    )
    try:
        daemon.start()
        lines = _strategy_lines(daemon)
        assert [line.split("strategy for serve ")[1].split(" ")[0] for line in lines] == [
            "forecast",
            "rollout",
            "encode",
        ]
        assert all(f"on {cpu_model()}: " in line and "timed in" in line for line in lines)
        assert len(list((tmp_path / "cache" / "strategy").glob("serve-*.json"))) == 3
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=20) == 0

        daemon.start()
        again = _strategy_lines(daemon)[3:]
        assert len(again) == 3 and all("from the cache" in line for line in again)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=20) == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
