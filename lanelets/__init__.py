"""Build and model Lanelet2 HD maps.

- :func:`read_osm` reads any real Lanelet2 ``.osm`` losslessly (:class:`OsmMap`), with a summary of what is
  kept how; :func:`load_lanelet2` gives Lanelet2's own map model of it (routing, matching, checks).
- :func:`build` turns survey input (``.osm``, ``.gpkg``, ``.geojson``) into a Lanelet2 ``.osm``.
- :mod:`lanelets.frames`: reference frames and epochs (CGCS2000, ITRF2014/2020, WGS84), one pyproj chain.
- :mod:`lanelets.locate`: the drivable lanelet under positions (lanelet2 matching), with lane coordinates.
"""
from lanelets.errors import MapError
from lanelets.files import write_atomic
from lanelets.osm import OsmMap, read_osm
from lanelets.model import load_lanelet2
from lanelets.build import build

__all__ = ["MapError", "OsmMap", "read_osm", "write_atomic", "load_lanelet2", "build"]
