"""codescaler: execution-free reward models for code (CodeScaler, arXiv 2602.17684).

Nothing happens at import time; import the submodules you need (``codescaler.extract``,
``codescaler.shaping``, ``codescaler.executor`` ...).
"""

__version__ = "0.1.0"
