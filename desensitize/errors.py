class DesensitizeError(ValueError):
    """Desensitisation refused or failed: one line naming the file/rule and the problem."""
