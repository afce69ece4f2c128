"""vots-agent: the VOTS core agent service.

Code is analysed by ruff, bandit and radon into one findings model
(:mod:`vots_agent.findings`), rendered as JSON or SARIF 2.1.0, enriched with
similar code from the RAG service and, when one is configured, an explanation
from an OpenAI-compatible model. The library works without the HTTP layer.
"""

__version__ = "0.1.0"
