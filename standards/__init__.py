"""Quality and compliance checks of Lanelet2 maps and releases, graded per GB/T 24356 / GB/T 18316, and the
reports surveying staff sign.

- :data:`CHECKS` / :func:`check`: the check registry (id, quality element, class A/B/C/D, description).
- :func:`check_map`, :func:`check_release`: run every check, grade, and return the report dictionary.
- :func:`standards.report.render`: report.json / report.html / report.pdf bytes, English or Chinese.
"""
from standards.errors import StandardsError
from standards.registry import CHECKS, Hits, all_checks, check
from standards.report import render
from standards.runner import check_map, check_release

__all__ = ["StandardsError", "CHECKS", "Hits", "all_checks", "check", "check_map", "check_release", "render"]
