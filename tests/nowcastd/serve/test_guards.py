"""The watch directory's identity: still the same, missing, or replaced by another directory
under the same path."""

import os

from nowcastd.serve.guards import DirectoryIdentity, DirectoryState


def test_a_directory_is_the_same_then_missing_then_replaced(tmp_path):
    watched = tmp_path / "watch"
    watched.mkdir()
    identity = DirectoryIdentity(watched)
    identity.remember()
    assert identity.check() is DirectoryState.SAME
    os.rename(watched, tmp_path / "gone")
    assert identity.check() is DirectoryState.MISSING
    watched.write_text("a file where the directory was")
    assert identity.check() is DirectoryState.MISSING
    watched.unlink()
    newer = tmp_path / "newer"
    newer.mkdir()  # made while the old one still exists: another inode
    os.rename(newer, watched)
    assert identity.check() is DirectoryState.REPLACED
    assert identity.check() == "replaced"  # the words the states had as strings
    identity.remember()
    assert identity.check() is DirectoryState.SAME
