import shutil
from datetime import UTC, datetime

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nowcastd.errors import ScanError
from nowcastd.io.readers import FORMATS, detect_format, read_scan
from tests.paths import FIXTURES

from .odim_helper import write_odim

KNMI = FIXTURES / "knmi" / "RAD_NL25_RAP_5min_201008260000.h5"


def test_formats_lists_every_reader():
    assert set(FORMATS) == {"odim", "knmi", "npy"}


def test_npy_named_h5_is_detected_as_npy(tmp_path):
    path = tmp_path / "scan_202608261200.h5"
    with path.open("wb") as f:
        np.save(f, np.zeros((2, 2), np.float32))
    assert detect_format(path) == "npy"


def test_hdf5_that_is_neither_odim_nor_knmi_is_rejected(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h:
        h["x"] = np.zeros(3)
    with pytest.raises(ScanError, match=r"^other\.h5: expected ODIM_H5 .* or KNMI"):
        read_scan(path)


def test_odim_conventions_win_over_knmi_layout(tmp_path):
    path = write_odim(
        tmp_path / "both.h5",
        raw=np.zeros((2, 2), np.uint8),
        quantity="RATE",
        nominal_time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    with h5py.File(path, "r+") as h:
        h.create_dataset("image1/image_data", data=np.zeros((2, 2), np.uint16))
    assert detect_format(path) == "odim"


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=2048))
def test_random_bytes_raise_scan_error_naming_the_file(tmp_path, content):
    path = tmp_path / "random.h5"
    path.write_bytes(content)
    with pytest.raises(ScanError, match=r"^random\.h5: "):
        read_scan(path)


@pytest.mark.parametrize("keep", [8, 100, 4096, 30_000])
def test_truncated_knmi_raises_scan_error_naming_the_file(tmp_path, keep):
    path = tmp_path / "truncated.h5"
    path.write_bytes(KNMI.read_bytes()[:keep])
    with pytest.raises(ScanError, match=r"^truncated\.h5: ") as info:
        read_scan(path)
    assert info.value.__cause__ is not None


def test_missing_file_raises_scan_error(tmp_path):
    with pytest.raises(ScanError, match=r"^absent\.h5: ") as info:
        read_scan(tmp_path / "absent.h5")
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_forced_wrong_format_raises_scan_error(tmp_path):
    path = tmp_path / "knmi.h5"
    shutil.copyfile(KNMI, path)
    with pytest.raises(ScanError, match=r"^knmi\.h5: expected Conventions 'ODIM_H5/\.\.\.'"):
        read_scan(path, fmt="odim")
    assert read_scan(path, fmt="knmi").source_format == "knmi"


def test_unknown_fmt_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"fmt: expected 'auto' or one of"):
        read_scan(tmp_path / "x", fmt="grib")
