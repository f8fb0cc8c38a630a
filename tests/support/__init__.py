"""Helpers the tests share; tests/conftest.py keeps only fixtures.

``cli``: run the real photoctl in a subprocess with its own environment. ``databases``: empty
and migrated test databases (a template migrated once per session, cloned per test).
``photos``: generated JPEGs. ``worker``: background photoctl processes and polling.
"""

# The house's bound on a module's size (issue 22: a size alarm, not a budget that places code):
# tests/test_house_seams.py holds every module of photoctl to it, test_cli_package.py the CLI's.
MAX_MODULE_LINES = 800
