"""sd_notify client: messages arrive on real AF_UNIX datagram sockets."""

import os
import socket
import time
import uuid

import pytest

from nowcastd.serve.notify import Notifier, watchdog_interval_seconds


@pytest.fixture
def receiver(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def _fields(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_messages_reach_a_filesystem_socket(receiver):
    sock, path = receiver
    with Notifier.from_environment({"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.enabled
        assert notifier.ready(status="forecasting")
        assert _fields(sock) == {"READY": "1", "STATUS": "forecasting"}
        assert notifier.status("compiling\nrollout")
        assert _fields(sock) == {"STATUS": "compiling rollout"}
        assert notifier.watchdog()
        assert _fields(sock) == {"WATCHDOG": "1"}
        assert notifier.stopping()
        assert _fields(sock) == {"STOPPING": "1"}
        assert notifier.extend_timeout(90)
        assert _fields(sock) == {"EXTEND_TIMEOUT_USEC": "90000000"}


def test_reloading_carries_the_monotonic_clock(receiver):
    sock, path = receiver
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    with Notifier(path) as notifier:
        assert notifier.reloading()
    fields = _fields(sock)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_messages_reach_an_abstract_socket():
    name = f"nowcastd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        with Notifier.from_environment({"NOTIFY_SOCKET": "@" + name}) as notifier:
            assert notifier.ready()
        assert _fields(sock) == {"READY": "1"}
    finally:
        sock.close()


def test_without_notify_socket_every_message_is_a_no_op():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    notifier.close()


def test_a_vanished_socket_is_logged_not_raised(tmp_path, caplog):
    with Notifier(str(tmp_path / "gone.sock")) as notifier:
        assert notifier.watchdog() is False
    assert "sd_notify" in caplog.text


def test_a_relative_notify_socket_is_refused():
    with pytest.raises(ValueError, match="NOTIFY_SOCKET"):
        Notifier("run/notify")


def test_watchdog_interval_reads_usec_for_this_process():
    pid = str(os.getpid())
    assert watchdog_interval_seconds({"WATCHDOG_USEC": "60000000"}) == 60.0
    assert watchdog_interval_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}) == 30.0


def test_watchdog_interval_is_none_when_unset_or_for_another_process():
    assert watchdog_interval_seconds({}) is None
    other = str(os.getpid() + 1)
    assert watchdog_interval_seconds({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": other}) is None


@pytest.mark.parametrize("value", ["0", "-5", "sixty"])
def test_watchdog_interval_rejects_a_bad_value(value):
    with pytest.raises(ValueError, match="WATCHDOG_USEC"):
        watchdog_interval_seconds({"WATCHDOG_USEC": value})
