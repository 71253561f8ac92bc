"""An answer that showed nothing before the bot stopped: its question is answered again later.

Whether the bot was stopped (SIGTERM, the answer cut) or killed (the answer found still
streaming at start-up), the user saw no answer; their message is made pending again, to be
answered after the restart like a message still queued then.
"""

from __future__ import annotations

from bot.services import Services
from bot.storage.records import MessageKind, MessageStatus, StoredMessage
from bot.vision import has_photos


async def requeue_unstarted(services: Services, answer: StoredMessage) -> bool:
    """Make the question of an answer that never showed anything pending; whether it was.

    Only a chat turn is: not one answered after a restart once, nor one with photos (not
    kept), nor one answered already by another answer (a /retry that showed nothing).
    """
    if (
        services.config.streaming.resume_within <= 0
        or answer.kind is not MessageKind.CHAT
        or answer.content
        or answer.telegram_message_ids
    ):
        return False
    question = await services.store.question_of(answer)
    if (
        question is None
        or question.kind is not MessageKind.CHAT
        or question.status is not MessageStatus.COMPLETE
        or not question.telegram_message_ids
        or has_photos(question.content)
    ):
        return False
    return await services.store.requeue_unstarted(answer.id, question.id)
