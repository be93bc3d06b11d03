"""The seed's API gateway as pure-ASGI layers: authentication (JWT, JWKS, API keys, OAuth
introspection), authorization (RBAC), request shaping (validation, body limits, versions,
headers) and service routing (a reverse proxy over httpx), each usable alone and stacked in
the seed's order by one builder.

Work in progress (issue 6); the modules are importable one by one.
"""

from sysdesign_kit.gateway.authenticator import Authenticator
from sysdesign_kit.gateway.keys import KeySource, VerificationKey

__all__ = ["Authenticator", "KeySource", "VerificationKey"]
