"""A minimal sd_notify client: tells systemd (Type=notify) about readiness and liveness.

Speaks the datagram protocol of sd_notify(3) over the AF_UNIX socket named by
`NOTIFY_SOCKET`, a filesystem path or, with a leading `@`, a Linux abstract-namespace name.
Without `NOTIFY_SOCKET` (not run by systemd) every message is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to one socket; every send returns whether it was delivered.

    A failed send is logged as a warning and never raised: a lost status line must not stop
    the service (a lost `WATCHDOG=1` will, by systemd's hand, which is the point).
    """

    def __init__(self, address: str | None) -> None:
        if address is not None and not address.startswith(("/", "@")):
            raise ValueError(
                f"NOTIFY_SOCKET: expected an absolute path or an '@' abstract name, got {address!r}"
            )
        self.address = address
        self._socket: socket.socket | None = None
        if address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for `NOTIFY_SOCKET`; a no-op one when it is unset or empty."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields: str | int) -> bool:
        """Send `KEY=value` lines, e.g. `send(READY=1, STATUS="compiling")`."""
        if self._socket is None or self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value)
            if "\n" in text:
                raise ValueError(f"sd_notify {key}: value must be one line, got {text!r}")
            lines.append(f"{key}={text}")
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._socket.sendto("\n".join(lines).encode(), target)
        except OSError as e:
            logger.warning("sd_notify to %s failed: %s", self.address, e)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is finished; systemd now reports the unit active."""
        return self.send(READY=1, **_status(status))

    def status(self, text: str) -> bool:
        """A one-line status shown by `systemctl status`; newlines become spaces."""
        return self.send(**_status(text))

    def watchdog(self) -> bool:
        """Keep-alive ping; send every `watchdog_interval_seconds() / 2`."""
        return self.send(WATCHDOG=1)

    def reloading(self, status: str | None = None) -> bool:
        """A reload (SIGHUP) began; follow with `ready()` when it is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING=1, MONOTONIC_USEC=usec, **_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown began."""
        return self.send(STOPPING=1, **_status(status))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more before the start/stop timeout fires (slow XLA compiles)."""
        if seconds <= 0:
            raise ValueError(f"extend_timeout seconds: expected > 0, got {seconds}")
        return self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _status(text: str | None) -> dict[str, str]:
    if text is None:
        return {}
    return {"STATUS": " ".join(text.splitlines())}


def watchdog_interval_seconds(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd set (`WatchdogSec=`), or None when there is none.

    None too when `WATCHDOG_PID` names another process (the variable was inherited).
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID")
    if pid_text:
        try:
            pid = int(pid_text)
        except ValueError as e:
            raise ValueError(f"WATCHDOG_PID: expected a process id, got {pid_text!r}") from e
        if pid != os.getpid():
            return None
    try:
        usec = int(usec_text)
    except ValueError as e:
        raise ValueError(f"WATCHDOG_USEC: expected a positive integer, got {usec_text!r}") from e
    if usec <= 0:
        raise ValueError(f"WATCHDOG_USEC: expected a positive integer, got {usec_text!r}")
    return usec / 1_000_000
