"""Errors of the Kafka plumbing, named for what happened."""


class KafkaPlumbingError(RuntimeError):
    """Base of the errors raised by ``engine.kafka``."""


class BrokerStartError(KafkaPlumbingError):
    """The embedded broker could not be started."""


class KafkaProducerDeliveryError(KafkaPlumbingError):
    """The broker did not acknowledge produced messages within the produce timeout."""


class TopicSetupError(KafkaPlumbingError):
    """Topics could not be created or described."""


class TlsTerminatorError(BrokerStartError):
    """The TLS terminator in front of the embedded broker is missing or would not start."""
