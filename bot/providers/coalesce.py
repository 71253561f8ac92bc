"""Pure: the events of one read of a stream, with consecutive deltas joined.

A provider sends an answer in many small pieces, and the bot reads the body in batches
(``bot.providers.http``): every event costs a pass through the layers between the adapter
and the chat, so the pieces of one read travel as one event. Joining changes nothing a
consumer sees once it concatenates the pieces, as every consumer does:

* a run of ``TextDelta`` values becomes one ``TextDelta`` with their texts joined;
* a run of ``ToolCallDelta`` fragments of one call (the same index, the later ones without
  an id or a name, which would start a new call) becomes one fragment with the arguments
  joined;
* every other event stays where it was, and nothing is joined across it.

Joining is associative: joining the joined runs of two reads gives what joining both reads
at once gives, so how the body was cut into reads only decides how much is joined.
"""

from __future__ import annotations

from dataclasses import replace

from bot.providers.base import StreamEvent, TextDelta, ToolCallDelta


def coalesce(events: list[StreamEvent]) -> list[StreamEvent]:
    """``events`` with each run of consecutive deltas of one kind joined into one event."""
    if len(events) < 2:
        return events
    out: list[StreamEvent] = []
    texts: list[str] = []  # the pieces of the text run in progress
    call: ToolCallDelta | None = None  # the first fragment of the tool call run in progress
    arguments: list[str] = []  # the arguments of that run's fragments
    for event in events:
        if isinstance(event, TextDelta):
            if call is not None:
                out.append(_call(call, arguments))
                call = None
            texts.append(event.text)
            continue
        if texts:
            out.append(TextDelta(texts[0] if len(texts) == 1 else "".join(texts)))
            texts = []
        if isinstance(event, ToolCallDelta):
            if call is not None and _continues(call, event):
                arguments.append(event.arguments)
                continue
            if call is not None:
                out.append(_call(call, arguments))
            call, arguments = event, [event.arguments]
            continue
        if call is not None:
            out.append(_call(call, arguments))
            call = None
        out.append(event)
    if texts:
        out.append(TextDelta(texts[0] if len(texts) == 1 else "".join(texts)))
    if call is not None:
        out.append(_call(call, arguments))
    return out


def _continues(call: ToolCallDelta, fragment: ToolCallDelta) -> bool:
    """Whether ``fragment`` only adds arguments to the call ``call`` began."""
    return fragment.index == call.index and fragment.id is None and fragment.name is None


def _call(first: ToolCallDelta, arguments: list[str]) -> ToolCallDelta:
    """The fragment ``first`` with the arguments of its whole run."""
    if len(arguments) == 1:
        return first
    return replace(first, arguments="".join(arguments))
