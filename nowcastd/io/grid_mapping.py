"""A CF `grid_mapping` from a proj4 string, for the `crs` variable of forecast files.

CF-1.8 §5.6: the data variable names a scalar variable (`precip:grid_mapping = "crs"`) whose
attributes describe the projection of its x and y. The proj4 string is always kept as
`proj4_params` (what pysteps and KNMI call it); `grid_mapping_name` and its parameters are added
for the projections radar composites use (polar and oblique stereographic, Lambert azimuthal
equal-area and conformal conic, azimuthal equidistant, transverse Mercator, longitude/latitude).
For any other projection only `proj4_params` is written.
"""

from __future__ import annotations

__all__ = ["grid_mapping_attrs", "proj4_parameters"]

#: CF name of each proj4 projection this module describes.
_NAMES = {
    "laea": "lambert_azimuthal_equal_area",
    "aeqd": "azimuthal_equidistant",
    "lcc": "lambert_conformal_conic",
    "tmerc": "transverse_mercator",
    "longlat": "latitude_longitude",
    "latlong": "latitude_longitude",
    "lonlat": "latitude_longitude",
    "latlon": "latitude_longitude",
}
#: Ellipsoids by proj4 name: (semi-major axis in m, inverse flattening).
_ELLIPSOIDS = {"WGS84": (6378137.0, 298.257223563), "GRS80": (6378137.0, 298.257222101)}


def proj4_parameters(proj4: str) -> dict[str, str]:
    """`+proj=stere +lat_0=90 +no_defs` -> {'proj': 'stere', 'lat_0': '90', 'no_defs': ''}."""
    out: dict[str, str] = {}
    for token in proj4.split():
        key, _, value = token.lstrip("+").partition("=")
        if key:
            out[key] = value
    return out


def _number(params: dict[str, str], key: str, default: float | None = None) -> float | None:
    try:
        return float(params[key])
    except (KeyError, ValueError):
        return default


def _earth(params: dict[str, str]) -> dict[str, float]:
    if (radius := _number(params, "R")) is not None:
        return {"earth_radius": radius}
    a, b = _number(params, "a"), _number(params, "b")
    if a is not None and b is not None:
        return {"semi_major_axis": a, "semi_minor_axis": b}
    if a is not None and (rf := _number(params, "rf")) is not None:
        return {"semi_major_axis": a, "inverse_flattening": rf}
    name = params.get("ellps") or params.get("datum")
    if name in _ELLIPSOIDS:
        a, rf = _ELLIPSOIDS[name]
        return {"semi_major_axis": a, "inverse_flattening": rf}
    return {}


def grid_mapping_attrs(proj4: str) -> dict[str, object]:
    """The attributes of a CF grid-mapping variable for `proj4` (module docstring)."""
    params = proj4_parameters(proj4)
    attrs: dict[str, object] = {"proj4_params": proj4.strip()}
    proj = params.get("proj", "")
    lon0, lat0 = _number(params, "lon_0", 0.0), _number(params, "lat_0", 0.0)
    offsets = {
        "false_easting": _number(params, "x_0", 0.0),
        "false_northing": _number(params, "y_0", 0.0),
    }
    if proj in ("stere", "sterea") and lat0 is not None and abs(lat0) == 90.0:
        attrs["grid_mapping_name"] = "polar_stereographic"
        attrs["straight_vertical_longitude_from_pole"] = lon0
        attrs["latitude_of_projection_origin"] = lat0
        if (lat_ts := _number(params, "lat_ts")) is not None:
            attrs["standard_parallel"] = lat_ts
        else:
            attrs["scale_factor_at_projection_origin"] = _number(
                params, "k_0", _number(params, "k", 1.0)
            )
        attrs.update(offsets)
    elif proj in ("stere", "sterea"):
        attrs["grid_mapping_name"] = "stereographic"
        attrs["longitude_of_projection_origin"] = lon0
        attrs["latitude_of_projection_origin"] = lat0
        attrs["scale_factor_at_projection_origin"] = _number(
            params, "k_0", _number(params, "k", 1.0)
        )
        attrs.update(offsets)
    elif proj in ("laea", "aeqd"):
        attrs["grid_mapping_name"] = _NAMES[proj]
        attrs["longitude_of_projection_origin"] = lon0
        attrs["latitude_of_projection_origin"] = lat0
        attrs.update(offsets)
    elif proj == "lcc":
        attrs["grid_mapping_name"] = _NAMES[proj]
        parallels = [_number(params, k) for k in ("lat_1", "lat_2")]
        attrs["standard_parallel"] = [p for p in parallels if p is not None] or [lat0]
        attrs["longitude_of_central_meridian"] = lon0
        attrs["latitude_of_projection_origin"] = lat0
        attrs.update(offsets)
    elif proj == "tmerc":
        attrs["grid_mapping_name"] = _NAMES[proj]
        attrs["scale_factor_at_central_meridian"] = _number(
            params, "k_0", _number(params, "k", 1.0)
        )
        attrs["longitude_of_central_meridian"] = lon0
        attrs["latitude_of_projection_origin"] = lat0
        attrs.update(offsets)
    elif proj in _NAMES:
        attrs["grid_mapping_name"] = _NAMES[proj]
    if "grid_mapping_name" in attrs:
        attrs.update(_earth(params))
    return attrs
