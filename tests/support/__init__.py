"""Helpers the tests share; tests/conftest.py keeps only fixtures.

``cli``: run the real photoctl in a subprocess with its own environment. ``databases``: empty
and migrated test databases (a template migrated once per session, cloned per test).
``photos``: generated JPEGs. ``worker``: background photoctl processes and polling.
"""
