"""API and caster tokens (one store, SQLite or PostgreSQL, shared by the HTTP API and the NTRIP caster).

Public face: ``TokenStore``, ``Token``, ``TokenError``, ``ROLES``.
"""
from tokens.store import ROLES, TOKEN_STORES, Token, TokenError, TokenStore, open_tokens

__all__ = ["ROLES", "TOKEN_STORES", "Token", "TokenError", "TokenStore", "open_tokens"]
