"""The seed architecture of sysdesign_kit, assembled as a running system.

One module per seed component, so later issues grow it part by part:

- ``app``: ``create_app``, the edge chain in the seed's order around the services;
- ``auth``: demo API keys -> `Principal` (until the gateway component replaces it);
- ``products``: the product service, ``GET /api/v1/products/{id}``;
- ``health``: the health checks behind ``/live``, ``/ready`` and ``/health``;
- ``problems``: RFC 9457 problem bodies for every error the system answers itself;
- ``demo``, ``report`` and ``timings``: ``sysdesign-kit demo``, the scripted run and its
  report (counts, then latency and stage timings read from the request events), or
  ``--serve``.

Importing this package imports nothing else; the modules need the ``all`` extra.
"""

__all__: list[str] = []
