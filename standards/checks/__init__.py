"""Built-in checks; importing this package registers them (see :mod:`standards.registry`)."""
from standards.checks import autoware, compliance, lanelet2_validators, quality  # noqa: F401
