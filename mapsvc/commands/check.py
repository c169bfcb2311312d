"""mapsvc CLI: check commands."""
commands: list = []
