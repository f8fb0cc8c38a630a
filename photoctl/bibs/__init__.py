"""Bib numbers: reading them from photos (reader.py, on proposals.py's text lines) and deciding
which reads are bibs (rules.py)."""
