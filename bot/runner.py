"""Running the bot: open every resource, start polling, and close it all again in order."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aiohttp

from bot.app import build_application
from bot.config import Config, TelegramConfig
from bot.handlers.context import BotApplication
from bot.handlers.help import register_commands
from bot.handlers.quota import rehearsal_requests
from bot.handlers.requeue import requeue_unstarted
from bot.handlers.resume import resume_pending
from bot.instances import shared_parts
from bot.messages import language_of, text
from bot.ops import OpsServer
from bot.providers.service import ProviderService
from bot.services import Services
from bot.storage.db import create_engine
from bot.storage.migrator import migrate_apart
from bot.storage.records import MessageStatus, StoredMessage
from bot.storage.store import Store
from bot.streaming.editor import StreamEditor

logger = logging.getLogger(__name__)

# Concurrent provider streams; aiohttp's default of 100 would queue the 101st answer.
PROVIDER_CONNECTIONS = 1024


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[BotApplication]:
    """Migrate, connect and start receiving updates; stop and close everything on exit."""
    await migrate_apart(config.database.url)
    engine = create_engine(config.database.url)
    try:
        connector = aiohttp.TCPConnector(limit=PROVIDER_CONNECTIONS)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            shared_parts(config) as shared,
        ):
            providers = ProviderService.from_config(config, session)
            try:
                services = Services.create(config, Store(engine), providers, shared)
                providers.warm_catalogue()
                await services.store.sync_personas(config.personas)
                await services.store.warm_up()
                if services.quotas is not None:
                    await services.quotas.warm_up(rehearsal_requests(config.quotas))
                application = build_application(services)
                async with _ops_server(config, services), application:
                    await register_commands(application.bot)
                    await recover_interrupted(services, application)
                    resuming = await resume_pending(services, application)
                    await application.start()
                    await _receive_updates(application, config.telegram)
                    services.readiness.username = application.bot.username
                    services.readiness.ready = True
                    logger.info(
                        "bot @%s is running (%s)", application.bot.username, config.telegram.mode
                    )
                    _freeze_start_up_objects()
                    try:
                        yield application
                    finally:
                        gc.unfreeze()
                        await _stop_gracefully(application, services, resuming)
            finally:
                await providers.aclose()
    finally:
        await engine.dispose()


async def _stop_gracefully(
    application: BotApplication, services: Services, resuming: Sequence[asyncio.Task[None]]
) -> None:
    """Take no more updates, let answers in flight finish for a grace period, cut the rest.

    Turns still queued are not started; answers cut at the end are stored interrupted.
    Messages pending since the last restart and not answered yet stay pending.
    """
    services.readiness.ready = False
    stops = services.stops
    stops.close()
    grace_ends = asyncio.get_running_loop().time() + services.config.streaming.shutdown_grace
    assert application.updater is not None
    await application.updater.stop()
    if not await stops.drained(max(0.0, grace_ends - asyncio.get_running_loop().time())):
        logger.info("cutting the answers still streaming after the shutdown grace period")
        stops.interrupt()
    # Each ends once its answer does: no further turn starts now.
    await asyncio.gather(*resuming, return_exceptions=True)
    await application.stop()


async def _receive_updates(application: BotApplication, telegram: TelegramConfig) -> None:
    """Long-poll getUpdates, or set the webhook and serve it with PTB's webhook server."""
    updater = application.updater
    assert updater is not None
    if telegram.mode == "polling":
        # start_polling deletes a webhook an earlier webhook-mode run left behind.
        await updater.start_polling(timeout=int(telegram.poll_timeout), drop_pending_updates=False)
        return
    webhook = telegram.webhook
    await updater.start_webhook(
        listen=webhook.listen,
        port=webhook.port,
        url_path=telegram.webhook_path,
        webhook_url=webhook.url,
        secret_token=webhook.secret_token,
        max_connections=webhook.max_connections,
        drop_pending_updates=False,
    )


@asynccontextmanager
async def _ops_server(config: Config, services: Services) -> AsyncIterator[None]:
    """Serve /healthz and /metrics while the bot runs, if ``ops.port`` is set."""
    services.readiness.mode = config.telegram.mode
    if config.ops.port is None:
        yield
        return
    server = OpsServer(services.readiness, services.metrics)
    services.readiness.ops_port = await server.start(config.ops.listen, config.ops.port)
    try:
        yield
    finally:
        await server.stop()


def _freeze_start_up_objects() -> None:
    """Collect start-up garbage, then exempt what is left from every later collection.

    Modules, configuration and the application live as long as the process. Left in the
    collector's oldest generation, they make each full collection walk about 100,000
    objects (some 50 ms), a pause that hits every chat at once, usually in a burst.
    """
    gc.collect()
    gc.freeze()


async def recover_interrupted(services: Services, application: BotApplication) -> None:
    """Finish answers a previous process left half-written: stored as interrupted, with a note.

    An answer that was still a draft (drafts vanish) is sent anew. One that had nothing yet
    is dropped and its question left pending, to be answered (see ``resume_pending``).
    """
    store = services.store
    for unfinished in await store.unfinished_answers():
        key = await store.conversation_key(unfinished.conversation_id)
        if key is None:
            continue
        # Another instance may be streaming it right now: it holds the conversation then.
        async with services.conversations.try_hold(key) as free:
            answer = await store.get_message(unfinished.id) if free else None
            if answer is None or answer.status is not MessageStatus.STREAMING:
                continue
            # Nothing of it reached the user: its question is answered anew, if it may be.
            if not await requeue_unstarted(services, answer):
                await _finish_interrupted(services, application, answer)


async def _finish_interrupted(
    services: Services, application: BotApplication, answer: StoredMessage
) -> None:
    """Mark one answer interrupted and show its text with a note saying so."""
    store = services.store
    await store.mark_interrupted(answer.id)
    services.metrics.answers.labels(MessageStatus.INTERRUPTED.value).inc()
    lang = language_of(await store.chat_language(answer.telegram_chat_id))
    editor = StreamEditor(
        application.bot,
        services.outbox,
        answer.telegram_chat_id,
        adopt_message_ids=answer.telegram_message_ids,
    )
    await editor.finish(text=answer.content, note=text("note.interrupted", lang))
    logger.info("answer %s was interrupted by a restart; marked so", answer.id)
