"""Bib numbers: reading them from photos (reader.py, on proposals.py's text lines) and deciding
which reads are bibs (rules.py).

How the pipeline is meant to call it (one reader per worker process, built at warm-up: ~0.1
CPU-s and ~55 MB for the session, ~75 MB once it has read; onnxruntime's run is thread-safe):

    reader = BibReader()                       # ReaderSettings(threads=1) by default
    decoded = decode_bytes(..., detail_px=3000)  # the draft the preview is made from anyway
    sharp = decoded.sharpest
    reads = reader.read(sharp, scale=decoded.width / sharp.width)
    bibs = find_bibs(reads, BibRules(start_list=..., low=..., high=..., pattern=...))

`reads` (text, box in original pixels, confidence) are what an engine returns, so the
Rekognition engine (DetectText) can feed the same `find_bibs`; `bibs` are what to store.
"""
