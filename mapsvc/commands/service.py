"""mapsvc CLI: service commands."""
commands: list = []
