"""mapsvc CLI: cors commands."""
commands: list = []
