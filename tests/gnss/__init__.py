"""Tests of the cors package: NTRIP caster, stations, RTCM, RTK, network RTK (named apart so as not to shadow cors)."""
