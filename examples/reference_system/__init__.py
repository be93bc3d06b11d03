"""The seed architecture of sysdesign_kit, assembled as a running system.

One module per seed component, so later issues grow it part by part:

- ``app``: ``create_app``, the edge chain in the seed's order around the services;
- ``auth``: demo API keys -> `Principal` (until the gateway component replaces it);
- ``products``: the product service, ``GET /api/v1/products/{id}``, reading through a
  cache in front of ``product_db`` (a simulated database with latency and outages);
- ``health``: the health checks behind ``/live``, ``/ready`` and ``/health``;
- ``problems``: RFC 9457 problem bodies for every error the system answers itself;
- ``payments``, ``payment_service``: the payment API and its flaky provider behind a breaker
  and retries;
- ``demo``, ``report``, ``timings``, ``payments_report`` and ``products_report``:
  ``sysdesign-kit demo``, the scripted run and its report (counts, latency and stage
  timings read from the request events, the payment and product-cache scenarios), or
  ``--serve``.

Importing this package imports nothing else; the modules need the ``all`` extra.
"""

__all__: list[str] = []
