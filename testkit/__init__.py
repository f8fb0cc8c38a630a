"""Test doubles and generators that both tests/ and scripts/ use.

Neither side imports the other: the benchmarks must not depend on test modules (which pull in
pytest fixtures and move when the suite is reorganised), and the tests must not depend on
scripts. This package sits beside them at the top of the checkout; it is not shipped with
photoctl (pyproject's package list names photoctl only).
"""
