"""The web console's page and browser code (served by :mod:`mapsvc.api.console`)."""
