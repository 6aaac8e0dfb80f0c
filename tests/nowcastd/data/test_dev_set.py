"""Against the shipped radar development set: the transform and the movie cutting reproduce it."""

from __future__ import annotations

import ast

import numpy as np

from nowcastd.data.loader import open_dataset
from nowcastd.io.transform import DataTransform

DBZ = DataTransform(kind="dbz")


def _dev_set_functions(dev_data):
    """rate_to_unit / unit_to_rate taken from make_dev_set.py itself (it imports pysteps)."""
    tree = ast.parse((dev_data / "make_dev_set.py").read_text())
    keep = [
        node
        for node in tree.body
        if (isinstance(node, ast.FunctionDef) and node.name in ("rate_to_unit", "unit_to_rate"))
        or (
            isinstance(node, ast.Assign)
            and any(getattr(t, "id", "") == "DBZ_MAX" for t in node.targets)
        )
    ]
    ns = {"np": np}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "make_dev_set.py", "exec"), ns)
    return ns["rate_to_unit"], ns["unit_to_rate"]


def test_transform_matches_make_dev_set_functions(dev_data):
    rate_to_unit, unit_to_rate = _dev_set_functions(dev_data)
    r = np.concatenate([[0.0, 0.01, 0.037, 0.12], np.geomspace(0.05, 500.0, 200)])
    np.testing.assert_array_equal(DBZ.to_model(r), rate_to_unit(r))
    x = np.linspace(0.0, 1.0, 201)
    np.testing.assert_allclose(DBZ.to_physical(x), unit_to_rate(x), rtol=1e-6)


def test_movie_block2_stride4_reproduces_train_clips_exactly(dev_data):
    ref = np.load(dev_data / "train_clips.npy", allow_pickle=False)
    cs = open_dataset(
        dev_data / "movie.h5",
        total_length=20,
        img_height=128,
        img_width=128,
        img_channel=1,
        block=2,
        stride=4,
        valid_fraction=0.0,
    )
    assert cs.transform == DBZ and cs.valid_mask is None and cs.timestep_seconds == 300
    assert len(cs) == ref.shape[0]
    np.testing.assert_array_equal(cs.clips[:], ref)


def test_train_clips_index_sidecar_gives_dbz_and_a_time_split(dev_data):
    kw = dict(total_length=20, img_height=128, img_width=128, img_channel=1, valid_fraction=0.35)
    train = open_dataset(dev_data / "train_clips.npy", split="train", **kw)
    valid = open_dataset(dev_data / "train_clips.npy", split="valid", **kw)
    assert train.transform == DBZ and train.timestep_seconds == 300
    assert max(train.meta["frame_starts"]) + 20 <= min(valid.meta["frame_starts"])
    assert valid.times[0] == "2010-08-26T05:00:00Z"
