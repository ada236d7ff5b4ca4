"""fastgw: a fast LLM gateway with Helicone's header contract.

The public surface is small: ``Config`` (load and validate configuration), ``Gateway`` (the core
that turns a request into a response) and ``app`` (the same core as a raw ASGI 3 application).
"""

from fastgw import _compiled

_compiled.install()  # before any other submodule: it decides which build of some modules loads

__version__ = "0.1.0"

__all__ = ["__version__"]
