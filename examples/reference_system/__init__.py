"""The seed architecture of sysdesign_kit, assembled as a running system.

One module per seed component, so later issues grow it part by part:

- ``app``: ``create_app``, the edge chain in the seed's order around the services;
- ``auth``: demo API keys -> `Principal` (until the gateway component replaces it);
- ``products``: the product service, ``GET /api/v1/products/{id}``;
- ``health``: ``GET /health`` for the load balancer;
- ``problems``: RFC 9457 problem bodies for every error the system answers itself;
- ``demo`` and ``report``: ``sysdesign-kit demo``, the scripted run and its report, or
  ``--serve``.

Importing this package imports nothing else; the modules need the ``all`` extra.
"""

__all__: list[str] = []
