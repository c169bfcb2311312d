"""Moved to the top-level ``tokens`` package; this name stays for code written against it."""
from tokens import ROLES, Token, TokenError, TokenStore  # noqa: F401
