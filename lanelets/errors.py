class MapError(ValueError):
    """Bad map input: one line naming the file and the problem."""
