"""Alert sinks: where stored violations are pushed as they arrive, besides the violations topic."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from config.settings import Settings
from events.outputs import Violation

# Builds a sink of one kind from the settings, or None when that kind is not configured.
AlertSinkFactory = Callable[[Settings], "AlertSink | None"]

_FACTORIES: dict[str, AlertSinkFactory] = {}


class AlertSink(ABC):
    @abstractmethod
    def send(self, violations: Sequence[Violation]) -> None:
        """Deliver one batch of stored violations; must not block the ingest loop for long."""

    @abstractmethod
    def close(self) -> None:
        """Deliver or set aside whatever is pending, and release resources."""


def register_alert_sink(kind: str) -> Callable[[AlertSinkFactory], AlertSinkFactory]:
    def register(factory: AlertSinkFactory) -> AlertSinkFactory:
        if kind in _FACTORIES:
            raise ValueError(f"alert sink kind {kind!r} is already registered")
        _FACTORIES[kind] = factory
        return factory

    return register


def alert_sink_kinds() -> list[str]:
    return sorted(_FACTORIES)


def create_alert_sink(settings: Settings) -> AlertSink | None:
    """The sink for every configured kind (one sink fanning out if several), or None."""
    sinks = [sink for factory in _FACTORIES.values() if (sink := factory(settings)) is not None]
    if not sinks:
        return None
    return sinks[0] if len(sinks) == 1 else FanOutAlertSink(sinks)


class FanOutAlertSink(AlertSink):
    """Sends each batch to several sinks; one failing sink does not starve the others."""

    def __init__(self, sinks: Sequence[AlertSink]) -> None:
        self.sinks = list(sinks)

    def send(self, violations: Sequence[Violation]) -> None:
        errors: list[Exception] = []
        for sink in self.sinks:
            try:
                sink.send(violations)
            except Exception as error:
                errors.append(error)
        if errors:
            raise ExceptionGroup("alert sinks failed", errors)

    def close(self) -> None:
        errors: list[Exception] = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as error:
                errors.append(error)
        if errors:
            raise ExceptionGroup("closing alert sinks failed", errors)
