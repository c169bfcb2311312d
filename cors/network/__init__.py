"""Network RTK: virtual reference stations (VRS) synthesised from a network of reference stations.

Data flow, one epoch at a time (the same engine serves the caster and ``mapsvc vrs``):

  station epochs --(baseline.py: RTKLIB rtkpos, both ends fixed, iono + ZWD estimated)--> per-baseline
  states --(corrections.py: per satellite, dispersive / non-dispersive, relative to the master)-->
  --(interpolate.py: plane / surface / inverse distance, registry)--> corrections at a position
  --(virtual.py: master obs + geometric shift + corrections, iono sign flipped code vs phase)--> obsd_t
  --> rinex3.py (RINEX 3) or cors.rtcm_encode (RTCM 3 MSM + 1006 via RTKLIB's encoder).

integrity.py watches station coordinates and data; engine.py wires the pieces.
"""

from cors.network.sites import Site, load_site


