"""The response path: what happens to a response's bytes between the upstream and the client."""
