"""Report: VM and per-container utilisation, history, anomalies and right-sizing.

Pieces: ``collect`` (psutil + Docker engine samples and rates between two
samples), ``history`` (SQLite store with retention and downsampling),
``analysis`` (anomalies, right-sizing advice). The CLI is ``vots-ops report``.
"""
