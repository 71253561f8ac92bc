"""What the bot counts for ``/metrics``: answers, latency, Telegram calls, errors, queues.

Each ``Metrics`` has its own registry, so two bots in one process (as in the tests) do not
share counters.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.errors import ProviderError

# Seconds from the provider request to its first piece of text.
_FIRST_CHUNK_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The bot's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.answers = Counter(
            "bot_answers",
            "Answers finished, by how they ended (complete, cut, stopped, error, interrupted).",
            ["status"],
            registry=registry,
        )
        self.first_chunk = Histogram(
            "bot_provider_first_chunk_seconds",
            "Seconds from the provider request to the first text of the answer.",
            buckets=_FIRST_CHUNK_BUCKETS,
            registry=registry,
        )
        self.provider_errors = Counter(
            "bot_provider_errors",
            "Provider failures, by provider and kind (auth, quota, timeout, ...).",
            ["provider", "kind"],
            registry=registry,
        )
        self.quota_refusals = Counter(
            "bot_quota_refusals",
            "Requests refused by a quota, by whose (user, chat), period and measure.",
            ["scope", "period", "measure"],
            registry=registry,
        )
        self.telegram_calls = Counter(
            "bot_telegram_calls",
            "Telegram calls through the outbox, by method and outcome (ok, retry_after, error).",
            ["method", "outcome"],
            registry=registry,
        )
        self.telegram_retry_afters = Counter(
            "bot_telegram_retry_afters",
            "Telegram 429 answers (flood control) received.",
            registry=registry,
        )
        self.streams = Gauge(
            "bot_streams_active",
            "Answers streaming now.",
            registry=registry,
        )
        self.queued_turns = Gauge(
            "bot_turns_queued",
            "Messages waiting for the answer before them in their conversation.",
            registry=registry,
        )
        self.outbox_waiting = Gauge(
            "bot_outbox_waiting",
            "Telegram calls waiting for their chat's or the bot's flood budget.",
            registry=registry,
        )

    def provider_error(self, provider: str, exc: ProviderError) -> None:
        """Count a provider's failure by its kind."""
        self.provider_errors.labels(provider, exc.kind.value).inc()

    def watch(
        self,
        *,
        streams: Callable[[], float],
        queued_turns: Callable[[], float],
        outbox_waiting: Callable[[], float],
    ) -> None:
        """Read the gauges from the objects that know them, when /metrics is asked."""
        self.streams.set_function(streams)
        self.queued_turns.set_function(queued_turns)
        self.outbox_waiting.set_function(outbox_waiting)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
