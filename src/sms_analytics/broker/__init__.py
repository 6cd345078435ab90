"""Kafka plumbing shared by every stage: the embedded broker, topic names and admin, producers."""
