"""Test helpers for fastgw.

``fastgw.testing.mock_upstream`` is a fast mock of the OpenAI and Anthropic HTTP
APIs (real wire formats, SSE streaming, fault injection via ``x-mock-*``
headers) used as the upstream in tests and benchmarks. Nothing is imported here
so that ``python -m fastgw.testing.mock_upstream`` runs without a double import.
"""
