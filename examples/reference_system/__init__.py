"""The seed architecture of sysdesign_kit, assembled as a running system.

One module per seed component, so later issues grow it part by part:

- ``app``: ``create_app``, the edge chain in the seed's order around the services;
- ``auth``: demo API keys -> `Principal`;
- ``gateway``, ``demo_keys``: JWT authentication (the demo's RS256 tokens and their JWKS),
  the RBAC route rules and the services' body validation (refused credentials answered
  below the rate limiter, with the kit's ``gateway.deferred``);
- ``products``: the product service, ``GET`` and ``DELETE /api/v1/products/{id}``, reading
  through a cache in front of ``product_db`` (a simulated database with latency and outages);
- ``orders``, ``users``: the order service (``POST /api/v1/orders``,
  ``GET /api/v1/orders/{id}``) and the user service (``GET /api/v1/users/{id}``);
- ``health``: the health checks behind ``/live``, ``/ready`` and ``/health``;
- ``problems``: RFC 9457 problem bodies for every error the system answers itself;
- ``payments``, ``payment_service``: the payment API and its flaky provider behind a breaker
  and retries;
- ``demo``, ``report``, ``timings``, ``payments_report``, ``products_report`` and
  ``gateway_demo``: ``sysdesign-kit demo``, the scripted run and its report (counts,
  latency and stage timings read from the request events, the payment, product-cache and
  gateway scenarios), or ``--serve``.

Importing this package imports nothing else; the modules need the ``all`` extra.
"""

__all__: list[str] = []
