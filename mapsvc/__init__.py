"""mapsvc: wires lanelets, standards, desensitize, tiles and cors into a CLI and an HTTP service."""
__version__ = "0.1.0"
