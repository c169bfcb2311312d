"""Mountpoint kinds: one module each, imported by ``cors.caster.mountpoints.load_kinds``."""
