"""A forecast the daemon served, loaded through pysteps' plugin interface and scored with
pysteps.verification against the scans observed at its valid times."""

import numpy as np
import pysteps

from nowcastd.io.domain import Domain
from nowcastd.io.readers import read_scan
from tests.deploy.stack import EXTENT, KNMI_PROJECTION
from tests.nowcastd.serve.daemon import NATIVE

PYSTEPS_KEYS = {
    "projection", "x1", "y1", "x2", "y2", "xpixelsize", "ypixelsize", "yorigin", "unit",
    "transform", "zerovalue", "threshold", "accutime", "timestamps",
}  # fmt: skip
#: What the live daemon's 3-member ensemble adds (members are not written).
ENSEMBLE_KEYS = {"ensemble_members", "thresholds_mm_h", "probability", "ensemble_mean"}
DOMAIN = Domain(native_shape=(NATIVE, NATIVE), row0=0, col0=0, height=NATIVE, width=NATIVE, block=2)


def test_pysteps_loads_a_served_forecast_and_scores_it_against_the_observed_scans(live):
    importer = pysteps.io.get_method("nowcastd", "importer")
    precip, quality, metadata = importer(live.forecast(3))

    assert quality is None and set(metadata) == PYSTEPS_KEYS | ENSEMBLE_KEYS
    probability, _, _ = importer(live.forecast(3), product="probability")
    assert probability.shape == (len(metadata["thresholds_mm_h"]), 3, 32, 32)
    assert metadata["ensemble_members"] == 3
    assert precip.shape == (3, 32, 32) and precip.dtype == np.float64  # pysteps' default dtype
    assert metadata["projection"] == KNMI_PROJECTION
    x1, y1, x2, y2 = EXTENT
    grid = {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "xpixelsize": 2000.0, "ypixelsize": 2000.0}
    assert {key: metadata[key] for key in grid} == grid and metadata["yorigin"] == "upper"
    assert (metadata["unit"], metadata["transform"], metadata["accutime"]) == ("mm/h", None, 5.0)
    assert metadata["zerovalue"] == 0.0 and 0 < metadata["threshold"] <= np.nanmin(
        np.where(precip > 0, precip, np.inf)
    )
    expected = [live.valid_time(i).replace(tzinfo=None) for i in (4, 5, 6)]
    assert list(metadata["timestamps"]) == expected

    observed = np.stack(
        [
            DOMAIN.apply(read_scan(live.observed / f"scan_{t:%Y%m%d%H%M}.npy"))
            for t in metadata["timestamps"]
        ]
    )
    assert np.isnan(observed).any()  # the no-data corner: pysteps leaves it out of the scores
    for lead in range(3):
        scores = pysteps.verification.det_cont_fct(precip[lead], observed[lead], scores=["MAE"])
        # The tiny untrained model forecasts drizzle only: a drizzle threshold has events.
        csi = pysteps.verification.det_cat_fct(precip[lead], observed[lead], 0.01, ["CSI"])
        both = np.isfinite(observed[lead])
        mae = np.mean(np.abs(precip[lead][both] - observed[lead][both]))
        np.testing.assert_allclose(scores["MAE"], mae, rtol=1e-6)
        assert 0.0 < csi["CSI"] <= 1.0
