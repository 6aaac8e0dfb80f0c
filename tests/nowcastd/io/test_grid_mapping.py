import pytest

from nowcastd.io.grid_mapping import grid_mapping_attrs, proj4_parameters


def test_proj4_parameters_split_keys_values_and_flags() -> None:
    assert proj4_parameters("+proj=stere +lat_0=90 +no_defs") == {
        "proj": "stere",
        "lat_0": "90",
        "no_defs": "",
    }


@pytest.mark.parametrize(
    ("proj4", "expected"),
    [
        (
            "+proj=laea +lat_0=55 +lon_0=10 +x_0=1950000 +y_0=-2100000 +ellps=WGS84",
            {
                "grid_mapping_name": "lambert_azimuthal_equal_area",
                "latitude_of_projection_origin": 55.0,
                "longitude_of_projection_origin": 10.0,
                "false_easting": 1950000.0,
                "false_northing": -2100000.0,
                "semi_major_axis": 6378137.0,
                "inverse_flattening": 298.257223563,
            },
        ),
        (
            "+proj=lcc +lat_1=49 +lat_2=44 +lat_0=46.5 +lon_0=3 +R=6371229",
            {
                "grid_mapping_name": "lambert_conformal_conic",
                "standard_parallel": [49.0, 44.0],
                "longitude_of_central_meridian": 3.0,
                "earth_radius": 6371229.0,
            },
        ),
        (
            "+proj=stere +lat_0=52 +lon_0=5 +k=0.9999",
            {"grid_mapping_name": "stereographic", "scale_factor_at_projection_origin": 0.9999},
        ),
        ("+proj=longlat +datum=WGS84", {"grid_mapping_name": "latitude_longitude"}),
    ],
)
def test_grid_mapping_names_and_parameters(proj4: str, expected: dict) -> None:
    attrs = grid_mapping_attrs(proj4)
    assert attrs["proj4_params"] == proj4
    assert {key: attrs[key] for key in expected} == expected


def test_unknown_projection_keeps_only_the_proj4_string() -> None:
    assert grid_mapping_attrs("+proj=geos +h=35785831") == {
        "proj4_params": "+proj=geos +h=35785831"
    }
