"""mapsvc CLI: api commands."""
commands: list = []
