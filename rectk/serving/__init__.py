"""Serving a finished run: export (``export``), the small loader (``artifact``), the HTTP
server with micro-batching (``server``, ``batcher``)."""
