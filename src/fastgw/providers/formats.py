"""The wire formats by name: one ``Adapter`` (providers/base.py) per format, each in its own module.

``config.WIRE_FORMATS`` lists the same names, so a provider's ``format:`` is checked at start.
"""

from __future__ import annotations

from fastgw.providers.anthropic import ANTHROPIC
from fastgw.providers.azure import AZURE
from fastgw.providers.base import Adapter
from fastgw.providers.bedrock import BEDROCK
from fastgw.providers.gemini import GEMINI
from fastgw.providers.openai import OPENAI

# The name older code uses for a provider's format; every format is an Adapter.
WireFormat = Adapter

FORMATS: dict[str, Adapter] = {
    "openai": OPENAI,
    "anthropic": ANTHROPIC,
    "gemini": GEMINI,
    "bedrock": BEDROCK,
    "azure": AZURE,
}
