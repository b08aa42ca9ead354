"""Hotlists and hits: the real-time half of a Real Time Crime Center.

- :mod:`.lists`     named lists, entries, versions (every change a version, logged)
- :mod:`.csvimport` the CSV column mapping and row checks of ``hotlist import``
- :mod:`.matcher`   matches every stored read against active entries, after the ack
- :mod:`.hits`      hits, the verify-before-action workflow, the live event stream
- :mod:`.webhooks`  signed outbound deliveries to dispatch / CAD systems, retried
- :mod:`.service`   the matcher and senders as threads, or in a child process (:mod:`.worker`)

See docs/hotlists.md.
"""
