"""The LLM client that datagen's teacher and the judges share: one JSON-constrained chat at an OpenAI-compatible
or zhipuai endpoint (providers), how hard and how long to press it (retry), what its replies are worth (replies),
and many calls at once under one progress line (batch). It knows chats, not chunks or rubrics: it imports nothing
of datagen or the judge."""

from .batch import progress_line, run_pool
from .providers import Provider, Reply, Transient, make_provider
from .replies import BadReply, parse_json_reply
from .retry import RateLimiter, Reachability, attempts, backoff

__all__ = [
    "BadReply", "Provider", "RateLimiter", "Reachability", "Reply", "Transient", "attempts", "backoff",
    "make_provider", "parse_json_reply", "progress_line", "run_pool",
]
