"""Embedded Kafka-protocol brokers that privtrail launches when no external cluster is configured.

This package is the only place that knows anything broker-specific: how each broker is found and
started, whether its data survives a restart, and which client settings work around its defects.
Everything else talks plain Kafka protocol to `EmbeddedBroker.bootstrap`. Apache Kafka is the
default; noida, which needs no Java, runs when Kafka cannot.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from config.settings import Settings
from privtrail.brokers.apache_kafka import KafkaBroker
from privtrail.brokers.base import BrokerError, EmbeddedBroker
from privtrail.brokers.noida import NoidaBroker

__all__ = [
    "BROKERS",
    "FALLBACK",
    "BrokerError",
    "EmbeddedBroker",
    "KafkaBroker",
    "NoidaBroker",
    "broker_class",
    "embedded_broker",
    "runnable_settings",
    "tuned_settings",
]

BROKERS: dict[str, type[EmbeddedBroker]] = {cls.name: cls for cls in (KafkaBroker, NoidaBroker)}
# Runs from its PyPI wheel alone, so it is there whenever privtrail is installed.
FALLBACK = NoidaBroker.name


def broker_class(kind: str) -> type[EmbeddedBroker]:
    try:
        return BROKERS[kind]
    except KeyError:
        raise BrokerError(
            f"unknown embedded broker {kind!r}; choose one of: {', '.join(sorted(BROKERS))}"
        ) from None


def embedded_broker(kind: str, port: int, data_dir: Path) -> EmbeddedBroker:
    """An unstarted broker of `kind` on 127.0.0.1:`port`, keeping its files in `data_dir`."""
    return broker_class(kind)(port, data_dir)


def runnable_settings(settings: Settings, say: Callable[[str], None]) -> Settings:
    """`settings`, with the fallback broker if the chosen one cannot run here.

    The reason is passed to `say` as one line, so whoever started privtrail knows which broker
    runs and what to install to get the other.
    """
    if settings.kafka_bootstrap is not None:
        return settings
    missing = broker_class(settings.broker).missing()
    if missing is None:
        return settings
    say(f"the {settings.broker} broker cannot run: {missing}; using the {FALLBACK} broker")
    return settings.model_copy(update={"broker": FALLBACK})


def tuned_settings(settings: Settings) -> Settings:
    """`settings` with the embedded broker's client tuning filled into fields left unset.

    An external cluster (`kafka_bootstrap` set) gets no tuning: it is assumed to be real Kafka.
    """
    if settings.kafka_bootstrap is not None:
        return settings
    tuning = broker_class(settings.broker).client_tuning
    unset = {field: value for field, value in tuning.items() if getattr(settings, field) is None}
    return settings.model_copy(update=unset)
