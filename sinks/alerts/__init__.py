"""Alert sinks fed with each batch of stored violations (the Kafka alert is the topic itself).

Importing this package registers every built-in sink kind with `create_alert_sink`.
"""

from sinks.alerts.base import AlertSink, create_alert_sink, register_alert_sink
from sinks.alerts.webhook import WebhookAlertSink

__all__ = ["AlertSink", "WebhookAlertSink", "create_alert_sink", "register_alert_sink"]
