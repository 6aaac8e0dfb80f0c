from pathlib import Path

import pytest

from nowcastd.io.atomic import atomic_directory, atomic_file, atomic_path, is_ignored_name


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_file_appears_only_when_complete(tmp_path) -> None:
    target = tmp_path / "out.bin"
    with atomic_file(target) as f:
        f.write(b"abc")
        assert _listing(tmp_path) != ["out.bin"] and not target.exists()
        (temporary,) = _listing(tmp_path)
        assert is_ignored_name(temporary)
    assert target.read_bytes() == b"abc" and _listing(tmp_path) == ["out.bin"]


def test_atomic_path_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "forecast.h5"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old" and _listing(tmp_path) == ["forecast.h5"]


def test_atomic_directory_replaces_an_existing_directory_whole(tmp_path) -> None:
    target = tmp_path / "ckpt-00000001"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_directory(target) as tmp:
        assert is_ignored_name(tmp.name)
        (tmp / "meta.json").write_text("{}")
    assert _listing(target) == ["meta.json"] and _listing(tmp_path) == ["ckpt-00000001"]
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "meta.json").write_text("half")
        raise RuntimeError("writer failed")
    assert (target / "meta.json").read_text() == "{}" and _listing(tmp_path) == ["ckpt-00000001"]


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        (".scan.h5", True),
        ("scan.h5.tmp", True),
        ("scan.h5.part", True),
        ("scan.h5~", True),
        ("RAD_NL25_PCP_NA_202601010005.h5", False),
        ("scan_tmp.h5", False),
    ],
)
def test_ignored_names_are_hidden_and_temporary_ones(name: str, ignored: bool) -> None:
    assert is_ignored_name(name) is ignored
