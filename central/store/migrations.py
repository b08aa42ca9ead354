"""SQLite schema migrations, applied in list order; each runs with its
``_migrations`` record in one transaction (see ``SQLiteStore.migrate``).

Never edit a migration that has shipped; append a new one. Names are
``NNNN_topic``; numbers are reserved per area so parallel work does not collide:
0001-0099 reads and ingest, 0100-0199 devices and enrollment, 0200-0299 governance.
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_reads", """
        CREATE TABLE reads (
            read_id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            camera_id TEXT NOT NULL,
            captured_at TEXT NOT NULL,
            stored_at TEXT NOT NULL,
            plate TEXT NOT NULL,
            plate_folded TEXT NOT NULL,
            confidence REAL NOT NULL,
            box TEXT NOT NULL,
            alternates TEXT NOT NULL,
            latitude REAL, longitude REAL, heading REAL,
            model_version TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX reads_plate ON reads(plate, captured_at);
        CREATE INDEX reads_plate_folded ON reads(plate_folded, captured_at);
        CREATE INDEX reads_captured ON reads(captured_at);
        CREATE INDEX reads_camera ON reads(camera_id, captured_at);
        CREATE INDEX reads_device ON reads(device_id, captured_at);
        CREATE TABLE read_images (
            read_id TEXT NOT NULL REFERENCES reads(read_id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('crop', 'context')),
            jpeg BLOB NOT NULL,
            PRIMARY KEY (read_id, kind)
        ) WITHOUT ROWID;
        CREATE TABLE access_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            organization TEXT NOT NULL,
            purpose TEXT NOT NULL,
            case_number TEXT NOT NULL,
            query TEXT NOT NULL,
            result_count INTEGER NOT NULL
        );
    """),
]

