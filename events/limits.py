"""Every bound on what the pipeline accepts and produces, in one place (docs/limits.md).

Inputs are bounded so that one event can never make an output too large for Kafka, a deadline
overflow the calendar, or a parser run out of stack; outputs are bounded so that the broker
always takes them, whatever the input was.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# --- Accepted events -------------------------------------------------------------------------

# A whole message value. Half of Kafka's default 1 MB message size: whatever a valid event holds,
# its audit record and dead letter still fit in one message.
MAX_EVENT_BYTES = 512 * 1024
# Objects and arrays inside objects and arrays. A contract event is 4 deep; the rest is room
# for CloudEvents extension attributes.
MAX_NESTING_DEPTH = 32
# Identifiers: `id`, `data.subject.id`, `data.actor.id`, `data.recipient.id`, `data.request_id`.
MAX_ID_CHARS = 256
# `source`, a URI-reference: room for a long path, not for a payload.
MAX_URI_CHARS = 1024
# Names from a closed vocabulary or taxonomy: org, kinds, category and use keys, a safeguard.
MAX_NAME_CHARS = 256
# Free text: a legal hold's `reason`.
MAX_TEXT_CHARS = 4096
# `data_categories` and `settings.public_categories`.
MAX_LIST_ITEMS = 64

# Event time. Nothing the pipeline judges happened before the Unix epoch, and a deadline years
# after the latest accepted time must still be a valid date.
EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
# How far `time` may be ahead of the judging worker's wall clock (clock skew between services).
DEFAULT_MAX_AHEAD = timedelta(hours=24)

# --- Produced messages -----------------------------------------------------------------------

# Key + value + headers of one produced message: below Kafka's 1 MB defaults for the producer's
# `max.request.size` and the broker's `message.max.bytes`, with room for the batch framing.
DEFAULT_MAX_MESSAGE_BYTES = 900 * 1024
# The smallest output limit a deployment may configure: a truncated dead letter must fit in it.
MIN_MAX_MESSAGE_BYTES = 128 * 1024
# What a dead letter too large to fit keeps of the rejected value, and of its key.
DEAD_LETTER_KEPT_BYTES = 64 * 1024
DEAD_LETTER_KEPT_KEY_BYTES = 1024
# A dead letter's header values (the reason, the field path): readable, never a payload.
MAX_HEADER_VALUE_BYTES = 1024
