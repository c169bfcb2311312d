class StandardsError(ValueError):
    """Bad input to a quality check (a check-point file, a reference map, a config): one line naming the file."""
