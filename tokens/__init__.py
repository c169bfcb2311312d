"""API and caster tokens (one SQLite store shared by the HTTP API and the NTRIP caster).

Public face: ``TokenStore``, ``Token``, ``TokenError``, ``ROLES``.
"""
from tokens.store import ROLES, Token, TokenError, TokenStore

__all__ = ["ROLES", "Token", "TokenError", "TokenStore"]
