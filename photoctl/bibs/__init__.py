"""Bib numbers: finding a runner's photos by the number on their bib.

lookup.py holds the participant side's queries: the photos where a bib was read in an event,
a participant's own bibs, and their gallery as the union of face matches and bib reads.
"""
