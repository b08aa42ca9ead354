"""PostgreSQL schema migrations of the read store, applied in list order by
``alpr-central db migrate`` (never implicitly by ``run``); each runs with its
``alpr_migrations`` record in one transaction. Never edit a migration that has
shipped; append a new one. Numbers follow :mod:`.migrations` (0001-0099 reads).

Design (see docs/scaling.md):

- ``reads`` and ``read_images`` are partitioned by capture time, one partition
  per calendar month (UTC), named ``reads_YYYYMM`` / ``read_images_YYYYMM``.
  :func:`alpr_ensure_read_partitions` creates them ahead of time and for any
  month a batch of reads arrives for (a device's backlog from an old month).
  Retention drops whole months and deletes only at the edge month.
- A primary key of a partitioned table must contain the partition key, so the
  key is ``(read_id, captured_at)``. That is enough for idempotency: a device
  resends the *same sealed read*, whose capture time is inside the encrypted
  record, so a resend always collides on the key; only a different read that
  reuses an id with another capture time could be stored twice, and read ids
  are UUIDv7 drawn by the device (74 random bits per millisecond).
- Plates are ``COLLATE "C"`` (they are upper-case ASCII letters and digits),
  so the plain B-tree on ``(plate, captured_at)`` serves both exact matches and
  prefix patterns (``LIKE '7AB%'``), and sorts like SQLite's ``GLOB`` index.
  One pg_trgm GIN index on the confusable-folded plate serves every other
  pattern (``*123``, ``7?B*12``) and tolerant searches: a plate that matches a
  pattern also matches the folded pattern on its folded plate, so a plain
  wildcard search filters the folded index first and rechecks ``plate``.
- JPEGs do not compress: ``STORAGE EXTERNAL`` stops PostgreSQL trying (and
  failing) to compress each one, and ``toast_tuple_target = 8160`` keeps a
  plate crop (2-5 KB) in the row instead of splitting it into TOAST chunks.
- No foreign key from images to reads (it would cost a lookup per image and
  couple the partitions' drops); the store writes both in one transaction and
  drops both months together.
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_reads", r"""
        CREATE EXTENSION IF NOT EXISTS pg_trgm;

        CREATE TABLE reads (
            read_id uuid NOT NULL,
            device_id text NOT NULL,
            camera_id text NOT NULL,
            captured_at timestamptz NOT NULL,
            stored_at timestamptz NOT NULL,
            plate text COLLATE "C" NOT NULL,
            plate_folded text COLLATE "C" NOT NULL,
            confidence double precision NOT NULL,
            box jsonb NOT NULL,
            alternates jsonb NOT NULL,
            latitude double precision,
            longitude double precision,
            heading double precision,
            model_version text NOT NULL,
            PRIMARY KEY (read_id, captured_at)
        ) PARTITION BY RANGE (captured_at);
        CREATE INDEX reads_plate ON reads (plate, captured_at);
        CREATE INDEX reads_plate_folded ON reads (plate_folded, captured_at);
        CREATE INDEX reads_plate_folded_trgm ON reads USING gin (plate_folded gin_trgm_ops);
        CREATE INDEX reads_captured ON reads (captured_at);
        CREATE INDEX reads_device_camera ON reads (device_id, camera_id, captured_at);

        CREATE TABLE read_images (
            read_id uuid NOT NULL,
            captured_at timestamptz NOT NULL,
            kind text NOT NULL CHECK (kind IN ('crop', 'context')),
            jpeg bytea NOT NULL,
            PRIMARY KEY (read_id, captured_at, kind)
        ) PARTITION BY RANGE (captured_at);
        ALTER TABLE read_images ALTER COLUMN jpeg SET STORAGE EXTERNAL;

        -- Create the monthly partitions of both tables covering [lo, hi]; returns
        -- how many it made. Serialised by an advisory lock so collectors racing for
        -- the same new month do not collide.
        CREATE FUNCTION alpr_ensure_read_partitions(lo timestamptz, hi timestamptz) RETURNS integer
        LANGUAGE plpgsql AS $fn$
        DECLARE
            m timestamptz := date_trunc('month', lo, 'UTC');
            parent text;
            name text;
            made integer := 0;
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtext('alpr_read_partitions'));
            WHILE m <= hi LOOP
                FOREACH parent IN ARRAY ARRAY['reads', 'read_images'] LOOP
                    name := parent || '_' || to_char(m AT TIME ZONE 'UTC', 'YYYYMM');
                    IF to_regclass(name) IS NULL THEN
                        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                                       name, parent, m, (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC');
                        IF parent = 'read_images' THEN
                            EXECUTE format('ALTER TABLE %I ALTER COLUMN jpeg SET STORAGE EXTERNAL, '
                                           'SET (toast_tuple_target = 8160)', name);
                        END IF;
                        made := made + 1;
                    END IF;
                END LOOP;
                m := (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
            END LOOP;
            RETURN made;
        END
        $fn$;
    """),
]
