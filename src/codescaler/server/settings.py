"""The reward server's settings (layer L3): limits and batching, validated before anything heavy loads.

Apart from ``app`` so that ``codescaler serve`` checks them before importing FastAPI or loading a model;
``codescaler.server.app`` re-exports ``ServerSettings``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from codescaler.errors import InputError
from codescaler.server.batcher import MAX_WAIT_MS_LIMIT


@dataclass(frozen=True)
class ServerSettings:
    """Limits and batching of one server; defaults suit an RL trainer posting a whole rollout batch.

    ``max_items_per_request`` only guards memory (Python objects per item); a large request is fed to the
    model in chunks of ``max_batch``, so 65,536 items (8x OpenRLHF's 1,024 prompts x 8 samples) are taken
    and the binding limit for real payloads is ``max_body_bytes``."""

    max_batch: int = 64                 # items per model call (the Scorer splits it into batch_size)
    max_wait_ms: float = 5.0            # how long the first request of a batch waits for company
    max_items_per_request: int = 65_536
    max_chars_per_item: int = 200_000   # prompt + response characters (/get_reward: per query and prompt)
    max_body_bytes: int = 64 * 1024 * 1024
    max_queue: int = 1024               # waiting requests (chunks of max_batch items) before 503
    retry_after_s: float = 1.0
    drain_timeout_s: float = 60.0

    def validate(self) -> None:
        """Raise ``InputError`` naming the first setting out of range (as its ``codescaler serve`` flag)."""
        for name in ("max_batch", "max_items_per_request", "max_chars_per_item", "max_body_bytes", "max_queue"):
            if getattr(self, name) < 1:
                raise InputError(f"must be >= 1, got {getattr(self, name)}", field=name.replace("_", "-"))
        # argparse's float() takes "nan" and "inf"; a NaN batching window made requests hang while /health said ok.
        if not (math.isfinite(self.max_wait_ms) and 0 <= self.max_wait_ms <= MAX_WAIT_MS_LIMIT):
            raise InputError(f"must be a finite number in 0..{MAX_WAIT_MS_LIMIT:g}, got {self.max_wait_ms:g}",
                             field="max-wait-ms")
        for name in ("retry_after_s", "drain_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"must be a finite number >= 0, got {value}", field=name.replace("_", "-"))

    def check(self) -> None:
        """The former name of ``validate`` (kept for callers of earlier releases)."""
        self.validate()
