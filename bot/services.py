"""The long-lived objects handlers use, carried in the application instead of globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from bot.access import Access
from bot.config import Config
from bot.gate import SEEN_UPDATES, TOLD_USERS, AllowList, RecentKeys
from bot.inflight import ConversationLocks, StopSignals
from bot.instances import Shared
from bot.metrics import Metrics
from bot.ops import Readiness
from bot.providers.service import ProviderService
from bot.rate_limit import RateLimiter
from bot.stop_relay import StopRelay
from bot.storage.quotas import QuotaStore
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
    conversations: ConversationLocks = field(default_factory=ConversationLocks)
    stops: StopSignals = field(default_factory=StopSignals)
    # Carries Stop presses to the instance streaming the answer; None with one instance.
    stop_relay: StopRelay | None = None
    metrics: Metrics = field(default_factory=Metrics)
    readiness: Readiness = field(default_factory=Readiness)
    allow_list: AllowList = field(default_factory=lambda: AllowList((), (), ()))
    # Update ids handled lately, so that one delivered again is skipped.
    seen_updates: RecentKeys = field(default_factory=lambda: RecentKeys(SEEN_UPDATES))
    # Refused users already told so.
    refused_told: RecentKeys = field(default_factory=lambda: RecentKeys(TOLD_USERS))
    # Each user's recent requests (limits.user_requests_per_minute).
    rate_limit: RateLimiter = field(default_factory=lambda: RateLimiter(0))
    # The quota counters; None when no quota is configured (nothing is counted then).
    quotas: QuotaStore | None = None

    @classmethod
    def create(
        cls,
        config: Config,
        store: Store,
        providers: ProviderService,
        shared: Shared | None = None,
    ) -> Services:
        """Services for ``config``, with the outbox and draft policy it describes.

        ``shared`` holds what other instances of the bot share with this one.
        """
        streaming = config.streaming
        shared = shared or Shared()
        services = cls(
            config=config,
            store=store,
            providers=providers,
            outbox=Outbox(
                private_interval=streaming.edit_interval_private,
                group_interval=streaming.edit_interval_group,
                global_per_second=streaming.global_per_second,
                final_burst=streaming.final_burst,
                shared=shared.budget,
            ),
            drafts=DraftSupport(enabled=streaming.drafts, interval=streaming.draft_interval),
            access=Access(config.telegram.admins),
            allow_list=AllowList(
                config.telegram.admins,
                config.telegram.allowed_users,
                config.telegram.allowed_chats,
            ),
            conversations=shared.conversations,
            stops=shared.stops,
            stop_relay=shared.stop_relay,
            rate_limit=RateLimiter(config.limits.user_requests_per_minute),
            quotas=QuotaStore(store, hold_for=timedelta(minutes=config.quotas.hold_minutes))
            if config.quotas.active
            else None,
        )
        metrics = services.metrics
        providers.on_error = metrics.provider_error
        metrics.watch(
            streams=lambda: len(services.stops),
            queued_turns=services.conversations.waiting,
            outbox_waiting=lambda: services.outbox.waiting,
        )
        return services
