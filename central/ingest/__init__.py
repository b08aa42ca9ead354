"""Ingest: the MQTT collector that opens sealed reads, validates them, hands
them to the store and acknowledges only after commit; central's data keys."""
