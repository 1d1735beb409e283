"""Dispatchers: one per channel, N replicas each, sending under max_concurrent."""
