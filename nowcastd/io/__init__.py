"""Files in and out: radar readers, domain, transform, forecast files, checkpoints.

`from nowcastd.io import read_pysteps` reads a forecast file as pysteps does a field
(`nowcastd.io.pysteps_importer`); it is imported on first use, so the submodules alone stay
light.
"""

__all__ = ["read_pysteps"]


def __getattr__(name: str) -> object:
    if name == "read_pysteps":
        from nowcastd.io.pysteps_importer import read_pysteps

        return read_pysteps
    raise AttributeError(f"module 'nowcastd.io' has no attribute {name!r}")
