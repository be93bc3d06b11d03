"""`LocalCopies`: the memory tier of a two-level cache, without I/O.

It holds copies of remote entries in a `MemoryBackend` and decides when a copy may be
served and kept:

- only while ``serving`` (the owner hears every invalidation); `reset` drops every copy
  whenever that changes, since invalidations may have been missed;
- a copy lives at most ``local_ttl`` seconds (and never beyond the remote entry's TTL), the
  bound on staleness when an invalidation is lost after all;
- a copy read from the remote is kept only if no invalidation that could concern it was
  applied while the read was on its way. A read takes a `token` before asking the remote:
  the global epoch (moved by namespace bumps, tag invalidations and resets) and the epoch
  of its key's stripe (moved by that key's invalidations and writes; 256 stripes, so a
  write to one key rarely costs another its copy). `keep` compares them under the same
  lock that applies invalidations, so an invalidation is applied either before the check
  (the copy is not kept) or after it (the copy is dropped).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sysdesign_kit.cache.memory import MemoryBackend

__all__ = ["LocalCopies", "Token"]

#: (global epoch, stripe, stripe epoch) as a read saw them before asking the remote.
Token = tuple[int, int, int]

#: Stripes of per-key epochs.
STRIPES = 256


class LocalCopies:
    """Copies of remote entries in ``memory``, kept coherent by the owner's invalidations.

    Args:
        memory: where the copies live.
        local_ttl: longest a copy is kept (seconds).
    """

    def __init__(self, memory: MemoryBackend, local_ttl: float) -> None:
        self.memory = memory
        self.local_ttl = local_ttl
        #: Whether copies may be served and kept (set by `reset`).
        self.serving = False
        #: Set while ``serving``.
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._epoch = 0
        self._stripes = [0] * STRIPES

    def token(self, namespace: str, key: str) -> Token:
        """What a read notes before asking the remote (see `keep`)."""
        stripe = hash((namespace, key)) % STRIPES
        return self._epoch, stripe, self._stripes[stripe]

    def _unchanged(self, token: Token) -> bool:
        # Under self._lock.
        epoch, stripe, stripe_epoch = token
        return self.serving and epoch == self._epoch and stripe_epoch == self._stripes[stripe]

    def keep(
        self,
        namespace: str,
        key: str,
        token: Token,
        data: bytes,
        remaining: float | None,
        tags: Sequence[str],
    ) -> None:
        """Keep a copy of what the remote answered, unless an invalidation came since
        ``token`` was taken.

        Args:
            remaining: the remote entry's remaining TTL in seconds (None: unknown).
        """
        if token[0] != self._epoch or not self.serving:
            return
        ttl = self.local_ttl if remaining is None else min(self.local_ttl, remaining)
        with self._lock:
            if self._unchanged(token):
                self.memory.set(namespace, key, data, ttl, tags)

    def wrote(
        self,
        namespace: str,
        key: str,
        token: Token,
        data: bytes,
        ttl: float,
        tags: Sequence[str],
    ) -> None:
        """This process wrote ``data`` to the remote (``token`` taken before): keep it as
        the copy if nothing was invalidated since, else drop the copy."""
        with self._lock:
            if self._unchanged(token):
                self.memory.set(namespace, key, data, min(ttl, self.local_ttl), tags)
            else:
                self.memory.delete(namespace, key)
            self._stripes[token[1]] += 1

    def drop(self, namespace: str, key: str) -> None:
        """Forget the copy of one entry."""
        with self._lock:
            self.memory.delete(namespace, key)
            self._stripes[hash((namespace, key)) % STRIPES] += 1

    def drop_namespace(self, namespace: str) -> None:
        """Forget the copies of a namespace's entries (its version was bumped)."""
        with self._lock:
            self.memory.bump(namespace)
            self._epoch += 1

    def drop_tags(self, tags: Sequence[str]) -> None:
        """Forget the copies carrying one of ``tags``."""
        with self._lock:
            self.memory.invalidate_tags(tags)
            self._epoch += 1

    def drop_all(self) -> None:
        """Forget every copy."""
        with self._lock:
            self.memory.clear()
            self._epoch += 1

    def reset(self, *, serving: bool) -> None:
        """Forget every copy, and stop reads in flight from keeping theirs; then serve
        copies or not."""
        with self._lock:
            self._epoch += 1
            self.memory.clear()
            self.serving = serving
        if serving:
            self.ready.set()
        else:
            self.ready.clear()
