"""vots-rag: code search for the VOTS stack.

The library works without its HTTP layer or CLI: :class:`vots_rag.index.Index`
ingests a tree and answers searches; ``app.py`` and ``cli.py`` only translate.
"""

__version__ = "0.1.0"
