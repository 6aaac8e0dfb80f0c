"""The project's exception types: every side-effecting failure is one of these."""


class NowcastdError(Exception):
    """Base class for errors that the CLI reports as a one-line message."""


class ScanError(NowcastdError):
    """A radar scan could not be read or does not fit the configured grid; `reason` labels
    the refusal (`nowcastd.io.readers.guard.ScanRefused` sets its own)."""

    reason = "corrupt"


class DataError(NowcastdError):
    """Training or evaluation data is missing, malformed or of the wrong shape."""


class CheckpointError(NowcastdError):
    """A checkpoint could not be written, read or imported."""


class ConfigError(NowcastdError):
    """A configuration file or flag combination is invalid."""


class UnknownFormatError(ScanError):
    """A file whose content is no radar format nowcastd reads (as opposed to a damaged one)."""

    reason = "unknown_format"
