"""How every Kafka client privtrail makes authenticates and encrypts: one model, three dialects.

kafka-python, aiokafka and Faust spell the same security settings differently; `KafkaSecurity`
is the one place that turns them into each library's options, so no client is left plaintext
when the cluster asks for SASL or TLS.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurity(BaseModel):
    model_config = ConfigDict(frozen=True)

    protocol: SecurityProtocol = "PLAINTEXT"
    mechanism: SaslMechanism = "PLAIN"
    username: str | None = None
    password: SecretStr | None = None
    # TLS: the CA that signed the brokers' certificates (unset: the system's), and the
    # client's own certificate and key when the brokers ask for one.
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.sasl and (not self.username or self.password is None):
            raise ValueError(
                f"Kafka security protocol {self.protocol} needs a SASL username and password "
                "(PRIVTRAIL_KAFKA_SASL_USERNAME, PRIVTRAIL_KAFKA_SASL_PASSWORD)"
            )
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError(
                "a Kafka client certificate needs both its file and its key "
                "(PRIVTRAIL_KAFKA_SSL_CERTFILE, PRIVTRAIL_KAFKA_SSL_KEYFILE)"
            )
        if not self.tls and (self.cafile or self.certfile):
            raise ValueError(
                f"Kafka TLS files are set but the security protocol is {self.protocol}; "
                "use SSL or SASL_SSL (PRIVTRAIL_KAFKA_SECURITY_PROTOCOL)"
            )
        return self

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def kafka_python(self) -> dict[str, Any]:
        """Options for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.protocol, **self._sasl_options()}
        if self.tls:
            files = {"ssl_cafile": self.cafile, "ssl_certfile": self.certfile}
            files["ssl_keyfile"] = self.keyfile
            options.update({key: str(path) for key, path in files.items() if path is not None})
        return options

    def aiokafka(self) -> dict[str, Any]:
        """Options for aiokafka's clients, which take TLS as an `ssl.SSLContext`."""
        options: dict[str, Any] = {"security_protocol": self.protocol, **self._sasl_options()}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        return options

    def faust(self) -> dict[str, Any]:
        """`faust.App` options: its `broker_credentials` (none for PLAINTEXT)."""
        import faust  # the worker's dependency; the other processes never import it

        if self.sasl:
            assert self.username is not None and self.password is not None
            credentials: Any = faust.SASLCredentials(
                username=self.username,
                password=self.password.get_secret_value(),
                mechanism=self.mechanism,
                ssl_context=self.ssl_context() if self.tls else None,
            )
        elif self.tls:
            credentials = faust.SSLCredentials(self.ssl_context())
        else:
            return {}
        return {"broker_credentials": credentials}

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.cafile) if self.cafile is not None else None
        )
        if self.certfile is not None:
            context.load_cert_chain(str(self.certfile), str(self.keyfile))
        return context

    def _sasl_options(self) -> dict[str, Any]:
        if not self.sasl:
            return {}
        assert self.password is not None
        return {
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password.get_secret_value(),
        }
