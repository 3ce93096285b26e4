"""Test helpers: the pytest plugin (``aiodatabases.testing.plugin``) and ASGI lifespan.

Built on the public API only.
"""

from ._lifespan import lifespan

__all__ = ["lifespan"]
