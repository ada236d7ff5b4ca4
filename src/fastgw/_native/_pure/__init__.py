"""Pure-Python twins of the compiled ``fastgw._native`` modules: the fallback and the test oracle."""
