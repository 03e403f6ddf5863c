"""Transport security of every Kafka client: the one place its options come from.

Every producer, consumer and admin client Sakk makes takes these options, so no client
can be left on plaintext when the settings ask for TLS. The settings are checked at
start-up (``engine.config.check_kafka_security``): SSL always verifies the broker's
certificate against ``SAKK_KAFKA_SSL_CAFILE`` and checks its host name; with a client
certificate and key the connection is mutual TLS, and the certificate's subject is the
principal the broker's ACLs grant rights to.
"""

from __future__ import annotations

from typing import Any

from engine.config import PREFIX, Settings, SettingsError


def kafka_security_options(settings: Settings) -> dict[str, Any]:
    """kafka-python keyword arguments for ``settings``' transport (plaintext or TLS)."""
    if settings.kafka_security_protocol != "SSL":
        return {"security_protocol": "PLAINTEXT"}
    if settings.kafka_ssl_cafile is None:  # load_settings refuses this; Settings() does not
        raise SettingsError(f"{PREFIX}KAFKA_SSL_CAFILE must be set for SSL")
    options: dict[str, Any] = {
        "security_protocol": "SSL",
        "ssl_cafile": str(settings.kafka_ssl_cafile),
        "ssl_check_hostname": True,  # a certificate for another host is refused
    }
    if settings.kafka_ssl_certfile is not None and settings.kafka_ssl_keyfile is not None:
        options["ssl_certfile"] = str(settings.kafka_ssl_certfile)
        options["ssl_keyfile"] = str(settings.kafka_ssl_keyfile)
    return options
