"""The long-lived objects handlers use, carried in the application instead of globals."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.access import Access
from bot.config import Config
from bot.inflight import KeyedLocks, StopSignals
from bot.metrics import Metrics
from bot.ops import Readiness
from bot.providers.service import ProviderService
from bot.storage.store import Store
from bot.streaming.editor import DraftSupport
from bot.streaming.outbox import Outbox


@dataclass
class Services:
    """Everything a handler needs beyond the update itself."""

    config: Config
    store: Store
    providers: ProviderService
    outbox: Outbox
    drafts: DraftSupport
    access: Access
    conversations: KeyedLocks = field(default_factory=KeyedLocks)
    stops: StopSignals = field(default_factory=StopSignals)
    metrics: Metrics = field(default_factory=Metrics)
    readiness: Readiness = field(default_factory=Readiness)

    @classmethod
    def create(cls, config: Config, store: Store, providers: ProviderService) -> Services:
        """Services for ``config``, with the outbox and draft policy it describes."""
        streaming = config.streaming
        return cls(
            config=config,
            store=store,
            providers=providers,
            outbox=Outbox(
                private_interval=streaming.edit_interval_private,
                group_interval=streaming.edit_interval_group,
                global_per_second=streaming.global_per_second,
            ),
            drafts=DraftSupport(enabled=streaming.drafts, interval=streaming.draft_interval),
            access=Access(config.telegram.admins),
        )
