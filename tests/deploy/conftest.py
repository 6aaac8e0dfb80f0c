import os
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.deploy.stack import LiveStack

SCANS = 7  # forecasts issued at scans 2..6 (3 inputs), leads of 5, 10 and 15 minutes


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> Iterator[LiveStack]:
    """The daemon fed `SCANS` scans and one damaged file, every forecast in Prometheus."""
    if shutil.which("prometheus") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus not found; CI must install it: apt-get install -y prometheus")
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    with LiveStack(tmp_path_factory.mktemp("live"), scans=SCANS) as stack:
        stack.wait_scraped("up", 1)  # scraped before the feed: rates see it begin
        received = 0
        for i in range(SCANS):
            time.sleep(0.3)  # a few scrapes across the feed
            stack.deliver(i)
            received += 1
            if i == 3:
                stack.deliver_damaged(i)
                received += 1
            stack.daemon.wait_received(received)
            if i >= 2:
                stack.daemon.wait_for(stack.forecast(i).exists, 30, f"forecast of scan {i}")
        stack.wait_scraped("nowcastd_forecasts_written_total", SCANS - 2)
        yield stack
