"""The RabbitMQ adapter (aio-pika): topology, connection, outbox relay, consumers."""
