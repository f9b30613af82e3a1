"""Strategies. They see only the bus and a read-only book."""
