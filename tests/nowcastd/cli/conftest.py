import logging

import pytest


@pytest.fixture(autouse=True)
def _restore_logging():
    """The app configures the root logger on the runner's streams; undo that."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
