"""Shared plumbing for talking to Redis (and later etcd): URLs, scripts, key names."""
