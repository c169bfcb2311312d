"""Bundled road-specs (survey input for `lanelets.survey.build_from_survey`)."""
from pathlib import Path

YIZHUANG = Path(__file__).resolve().parent / "yizhuang_pilot.geojson"  # illustrative, not surveyed
