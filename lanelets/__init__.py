"""Build and model Lanelet2 HD maps.

- :func:`read_osm` reads any real Lanelet2 ``.osm`` losslessly (:class:`OsmMap`) from a path, bytes or a file
  object, with a summary of what is kept how; :func:`osm_document` writes one, :func:`merge` joins tiles;
  :func:`load_lanelet2` gives Lanelet2's own map model of it (routing, matching, checks).
- :func:`build` turns survey input (``.osm``, ``.gpkg``, ``.geojson``) into a Lanelet2 ``.osm``.
"""
from lanelets.errors import MapError
from lanelets.files import write_atomic
from lanelets.osm import OsmMap, merge, osm_document, read_osm
from lanelets.model import load_lanelet2
from lanelets.build import build

__all__ = ["MapError", "OsmMap", "read_osm", "osm_document", "merge", "write_atomic", "load_lanelet2", "build"]
