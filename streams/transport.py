"""The worker's Kafka transport: Faust's aiokafka transport with an idempotent producer.

faust-streaming 0.15.3 has no setting for producer idempotence: it turns it on only for its
transactional producers (`processing_guarantee="exactly_once"`). An idempotent producer gets a
producer id and numbers its batches, so a batch it retries after a lost answer (a broker
restart, a timeout) is written once, not twice. aiokafka requires `acks=all` with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ProducerT

IDEMPOTENT_PRODUCER = {"acks": "all", "enable_idempotence": True}


class IdempotentProducer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        extra: Mapping[str, Any] = super()._settings_extra()
        return {**extra, **IDEMPOTENT_PRODUCER}


class IdempotentTransport(faust_aiokafka.Transport):
    Producer: ClassVar[type[ProducerT]] = IdempotentProducer
