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
    # -- 0200: every governance table of the SQLite migrations 0100-0600 in their
    # final shape (registry, users, the access log, holds, sharing, device audit logs,
    # hotlists and hits, tombstones, console sign-in, device status and health), the
    # same columns in the same order (``SELECT *`` reads alike on both backends).
    # Timestamps stay the canonical UTC text (the access-log hash covers it; see
    # central/store/database.py); keys SQLite numbers are identity columns.
    # A SQLite migration that changes a governance table needs its PostgreSQL twin here.
    ("0200_governance", r"""
        CREATE TABLE businesses (
            business_id text PRIMARY KEY,
            name text NOT NULL,
            contact_name text NOT NULL,
            contact_email text NOT NULL,
            contact_phone text NOT NULL,
            mou_id text NOT NULL,
            shared_data text NOT NULL,
            share_with text NOT NULL,
            retention_days bigint NOT NULL,
            consent_at text NOT NULL,
            status text NOT NULL CHECK (status IN ('active', 'withdrawn')),
            enrolled_at text NOT NULL,
            enrolled_by text NOT NULL,
            withdrawn_at text,
            withdrawn_by text
        );
        CREATE TABLE devices (
            device_id text PRIMARY KEY,
            owner text NOT NULL,
            location text NOT NULL,
            latitude double precision, longitude double precision, heading double precision,
            cameras text NOT NULL,
            status text NOT NULL CHECK (status IN ('pending', 'active', 'suspended', 'revoked')),
            status_reason text NOT NULL DEFAULT '',
            cert_serial text,
            cert_expires_at text,
            enrolled_by text NOT NULL,
            enrolled_at text NOT NULL,
            updated_at text NOT NULL
        );
        CREATE INDEX devices_owner ON devices(owner);
        CREATE TABLE device_certificates (
            serial text PRIMARY KEY,
            device_id text NOT NULL REFERENCES devices(device_id),
            issued_at text NOT NULL,
            not_after text NOT NULL,
            revoked_at text
        );
        CREATE INDEX device_certificates_device ON device_certificates(device_id);
        CREATE TABLE enrollment_tokens (
            token_id text PRIMARY KEY,
            secret_sha256 bytea NOT NULL,
            device_id text NOT NULL REFERENCES devices(device_id),
            created_by text NOT NULL,
            created_at text NOT NULL,
            expires_at text NOT NULL,
            used_at text,
            used_serial text
        );
        CREATE TABLE registry_events (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            at text NOT NULL,
            actor text NOT NULL,
            action text NOT NULL,
            subject text NOT NULL,
            detail text NOT NULL
        );
        CREATE TABLE users (
            name text PRIMARY KEY,
            organization text NOT NULL,
            role text NOT NULL,
            disabled bigint NOT NULL DEFAULT 0,
            created_at text NOT NULL,
            created_by text NOT NULL,
            last_active_at text
        );
        CREATE TABLE user_tokens (
            token_sha256 text PRIMARY KEY,
            user_name text NOT NULL REFERENCES users(name),
            created_at text NOT NULL,
            revoked_at text
        );
        CREATE TABLE audit_log (
            seq bigint PRIMARY KEY,
            at text NOT NULL,
            "user" text NOT NULL,
            organization text NOT NULL,
            action text NOT NULL,
            purpose text NOT NULL,
            case_number text NOT NULL,
            detail text NOT NULL,
            result_count bigint NOT NULL,
            prev_hash text NOT NULL,
            hash text NOT NULL
        );
        CREATE INDEX audit_log_at ON audit_log(at);
        CREATE TABLE legal_holds (
            hold_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            case_number text NOT NULL,
            plates text NOT NULL,
            since text NOT NULL,
            until text NOT NULL,
            reason text NOT NULL,
            review_on text NOT NULL,
            requested_by text NOT NULL,
            requested_at text NOT NULL,
            approved_by text,
            approved_at text,
            released_by text,
            released_at text
        );
        CREATE TABLE purge_runs (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            at text NOT NULL,
            "user" text NOT NULL,
            counts text NOT NULL
        );
        CREATE TABLE agreements (
            agreement_id text PRIMARY KEY,
            agency text NOT NULL,
            agency_type text NOT NULL,
            jurisdiction text NOT NULL,
            effective_on text NOT NULL,
            expires_on text NOT NULL,
            scope text NOT NULL,
            created_by text NOT NULL,
            created_at text NOT NULL,
            revoked_at text
        );
        CREATE TABLE share_requests (
            request_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            agreement_id text NOT NULL REFERENCES agreements(agreement_id),
            requesting_person text NOT NULL,
            case_number text NOT NULL,
            purpose text NOT NULL,
            plates text NOT NULL,
            since text NOT NULL,
            until text NOT NULL,
            entered_by text NOT NULL,
            entered_at text NOT NULL,
            status text NOT NULL,
            decided_by text,
            decided_at text,
            decision_note text,
            exported_at text,
            exported_reads bigint,
            bundle_sha256 text
        );
        CREATE TABLE device_audit (
            device_id text NOT NULL,
            seq bigint NOT NULL,
            record text NOT NULL,
            received_at text NOT NULL,
            PRIMARY KEY (device_id, seq)
        );
        CREATE TABLE hotlists (
            list_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            name text NOT NULL UNIQUE,
            category text NOT NULL,
            description text NOT NULL DEFAULT '',
            version bigint NOT NULL,
            created_by text NOT NULL,
            created_at text NOT NULL
        );
        CREATE TABLE hotlist_versions (
            list_id bigint NOT NULL REFERENCES hotlists(list_id),
            version bigint NOT NULL,
            at text NOT NULL,
            "user" text NOT NULL,
            action text NOT NULL,
            counts text NOT NULL,
            PRIMARY KEY (list_id, version)
        );
        CREATE TABLE hotlist_entries (
            entry_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            list_id bigint NOT NULL REFERENCES hotlists(list_id),
            plate text NOT NULL,
            plate_folded text NOT NULL,
            state text NOT NULL,
            reason text NOT NULL,
            source_agency text NOT NULL,
            source_ref text NOT NULL,
            case_number text NOT NULL,
            entered_by text NOT NULL,
            entered_at text NOT NULL,
            expires_at text NOT NULL,
            added_version bigint NOT NULL,
            removed_version bigint,
            removed_at text,
            removed_by text
        );
        CREATE INDEX hotlist_entries_folded ON hotlist_entries(plate_folded) WHERE removed_version IS NULL;
        CREATE INDEX hotlist_entries_plate ON hotlist_entries(plate, entered_at);
        CREATE TABLE hits (
            hit_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            read_id text NOT NULL,
            entry_id bigint NOT NULL,
            list_id bigint NOT NULL,
            list_name text NOT NULL,
            list_version bigint NOT NULL,
            category text NOT NULL,
            match_kind text NOT NULL CHECK (match_kind IN ('exact', 'alternate', 'confusable')),
            matched_text text NOT NULL,
            device_id text NOT NULL,
            camera_id text NOT NULL,
            captured_at text NOT NULL,
            stored_at text NOT NULL,
            hit_at text NOT NULL,
            entry text NOT NULL,
            visual text CHECK (visual IN ('yes', 'misread')),
            visual_text text,
            visual_by text,
            visual_at text,
            source text CHECK (source IN ('yes', 'no-longer-wanted')),
            source_by text,
            source_at text,
            disposition text CHECK (disposition IN ('dispatched', 'no-action', 'misread', 'stale-entry',
                                                    'duplicate')),
            disposition_by text,
            disposition_at text,
            note text NOT NULL DEFAULT '',
            UNIQUE (read_id, entry_id)
        );
        CREATE INDEX hits_pass ON hits(entry_id, device_id, camera_id, captured_at);
        CREATE INDEX hits_captured ON hits(captured_at);
        CREATE INDEX hits_read ON hits(read_id);
        CREATE TABLE hotlist_matcher (
            id bigint PRIMARY KEY CHECK (id = 1),
            last_rowid bigint NOT NULL
        );
        CREATE TABLE labelled_examples (
            example_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            hit_id bigint NOT NULL,
            read_id text NOT NULL,
            crop bytea,
            read_text text NOT NULL,
            true_text text NOT NULL,
            model_version text NOT NULL,
            captured_at text NOT NULL,
            labelled_by text NOT NULL,
            labelled_at text NOT NULL
        );
        CREATE INDEX labelled_examples_at ON labelled_examples(labelled_at);
        CREATE TABLE webhook_deliveries (
            delivery_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            hit_id bigint NOT NULL,
            endpoint text NOT NULL,
            status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts bigint NOT NULL DEFAULT 0,
            next_at text NOT NULL,
            created_at text NOT NULL,
            UNIQUE (hit_id, endpoint)
        );
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries(endpoint, next_at) WHERE status = 'pending';
        CREATE TABLE webhook_attempts (
            delivery_id bigint NOT NULL REFERENCES webhook_deliveries(delivery_id) ON DELETE CASCADE,
            attempt bigint NOT NULL,
            at text NOT NULL,
            status_code bigint,
            error text NOT NULL,
            seconds double precision NOT NULL,
            PRIMARY KEY (delivery_id, attempt)
        );
        CREATE TABLE read_tombstones (
            digest bytea PRIMARY KEY,
            purged_on text NOT NULL
        );
        CREATE INDEX read_tombstones_day ON read_tombstones(purged_on);
        CREATE TABLE user_passwords (
            user_name text PRIMARY KEY REFERENCES users(name),
            hash text NOT NULL,
            set_at text NOT NULL,
            set_by text NOT NULL,
            failures bigint NOT NULL DEFAULT 0,
            first_failure_at text,
            locked_until text
        );
        CREATE TABLE console_sessions (
            session_sha256 text PRIMARY KEY,
            user_name text NOT NULL REFERENCES users(name),
            csrf text NOT NULL,
            created_at text NOT NULL,
            last_seen_at text NOT NULL,
            ended_at text
        );
        CREATE INDEX console_sessions_user ON console_sessions(user_name);
        CREATE TABLE device_status (
            device_id text PRIMARY KEY,
            status text NOT NULL CHECK (status IN ('online', 'offline')),
            changed_at text NOT NULL
        );
        CREATE TABLE device_health (
            device_id text PRIMARY KEY,
            received_at text NOT NULL,
            skew_s double precision NOT NULL,
            doc text NOT NULL
        );
        CREATE TABLE device_health_history (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            device_id text NOT NULL,
            received_at text NOT NULL,
            skew_s double precision NOT NULL,
            doc text NOT NULL
        );
        CREATE INDEX device_health_history_device ON device_health_history(device_id, id);
    """),
    # -- 0201: the feed the hotlist matcher follows (SQLite: reads by rowid). The store
    # adds each new read here in its own transaction, numbering it under an advisory
    # lock held to the commit, so numbers become visible in order and a cursor
    # (hotlist_matcher.last_rowid) never passes a read committed later. Text columns
    # as the matcher reads them from SQLite; consumed and expired rows are removed by
    # the retention purge.
    ("0201_read_feed", r"""
        CREATE SEQUENCE read_feed_ids;
        CREATE TABLE read_feed (
            feed_id bigint PRIMARY KEY,
            read_id text NOT NULL,
            device_id text NOT NULL,
            camera_id text NOT NULL,
            captured_at text NOT NULL,
            stored_at text NOT NULL,
            plate text NOT NULL,
            plate_folded text NOT NULL,
            alternates text NOT NULL
        );
        INSERT INTO hotlist_matcher VALUES (1, 0);
    """),
    # -- 0740-0790: the PostgreSQL twins of the SQLite migrations of the same numbers
    # (fleet rollouts, remote configuration, the fleet alert feed, the labelled set):
    # the same tables, the same columns in the same order (so `db copy` moves them),
    # identity keys where SQLite numbers the rows, timestamps as the same UTC text.
    ("0740_fleet_rollouts", r"""
        CREATE TABLE device_groups (
            group_id text PRIMARY KEY,
            description text NOT NULL DEFAULT '',
            created_by text NOT NULL,
            created_at text NOT NULL
        );
        CREATE TABLE device_group_members (
            group_id text NOT NULL REFERENCES device_groups(group_id),
            device_id text NOT NULL REFERENCES devices(device_id),
            added_by text NOT NULL,
            added_at text NOT NULL,
            PRIMARY KEY (group_id, device_id)
        );
        CREATE TABLE release_bundles (
            sha256 text PRIMARY KEY,
            version text NOT NULL,
            size bigint NOT NULL,
            chunk_size bigint NOT NULL,
            chunks text NOT NULL,
            key_id text NOT NULL,
            allow_downgrade bigint NOT NULL,
            path text NOT NULL,
            stored_at text NOT NULL
        );
        CREATE TABLE rollouts (
            rollout_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            bundle_sha256 text NOT NULL REFERENCES release_bundles(sha256),
            version text NOT NULL,
            target_kind text NOT NULL CHECK (target_kind IN ('group', 'device')),
            target text NOT NULL,
            percent bigint NOT NULL CHECK (percent BETWEEN 1 AND 100),
            status text NOT NULL CHECK (status IN ('active', 'paused', 'superseded')),
            status_reason text NOT NULL DEFAULT '',
            max_failures bigint NOT NULL,
            max_failure_percent bigint NOT NULL,
            failures_at_resume bigint NOT NULL DEFAULT 0,
            created_by text NOT NULL,
            created_at text NOT NULL,
            updated_at text NOT NULL
        );
        CREATE TABLE device_updates (
            device_id text PRIMARY KEY,
            rollout_id bigint NOT NULL REFERENCES rollouts(rollout_id),
            version text NOT NULL,
            state text NOT NULL,
            reason text NOT NULL DEFAULT '',
            progress bigint NOT NULL DEFAULT 0,
            running_version text,
            state_at text NOT NULL,
            device_at_ms bigint NOT NULL DEFAULT 0,
            sent_at text
        );
        CREATE INDEX device_updates_rollout ON device_updates(rollout_id, state)
    """),
    ("0760_device_configs", r"""
        CREATE TABLE device_configs (
            device_id text NOT NULL,
            version bigint NOT NULL CHECK (version > 0),
            settings text NOT NULL,
            message bytea NOT NULL,
            key_id text NOT NULL,
            issued_by text NOT NULL,
            issued_at text NOT NULL,
            published_at text,
            PRIMARY KEY (device_id, version)
        );
        CREATE INDEX device_configs_unpublished ON device_configs(published_at) WHERE published_at IS NULL;
        CREATE TABLE device_config_state (
            device_id text PRIMARY KEY,
            applied_version bigint NOT NULL,
            state text NOT NULL,
            offered_version bigint,
            reason text,
            reported_at text NOT NULL,
            received_at text NOT NULL
        )
    """),
    ("0780_alert_feed", r"""
        CREATE TABLE device_alerts (
            alert_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            device_id text NOT NULL,
            owner text NOT NULL,
            kind text NOT NULL,
            subject text NOT NULL DEFAULT '',
            message text NOT NULL,
            since text,
            raised_at text NOT NULL,
            cleared_at text
        );
        CREATE UNIQUE INDEX device_alerts_open ON device_alerts(device_id, kind, subject) WHERE cleared_at IS NULL;
        CREATE TABLE alert_events (
            event_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            alert_id bigint NOT NULL REFERENCES device_alerts(alert_id) ON DELETE CASCADE,
            event text NOT NULL CHECK (event IN ('raised', 'cleared')),
            at text NOT NULL
        );
        CREATE INDEX alert_events_alert ON alert_events(alert_id);
        CREATE TABLE alert_deliveries (
            delivery_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            event_id bigint NOT NULL REFERENCES alert_events(event_id) ON DELETE CASCADE,
            endpoint text NOT NULL,
            status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts bigint NOT NULL DEFAULT 0,
            next_at text NOT NULL,
            created_at text NOT NULL,
            UNIQUE (event_id, endpoint)
        );
        CREATE INDEX alert_deliveries_due ON alert_deliveries(endpoint, next_at) WHERE status = 'pending';
        CREATE TABLE alert_attempts (
            delivery_id bigint NOT NULL REFERENCES alert_deliveries(delivery_id) ON DELETE CASCADE,
            attempt bigint NOT NULL,
            at text NOT NULL,
            status_code bigint,
            error text NOT NULL,
            seconds double precision NOT NULL,
            PRIMARY KEY (delivery_id, attempt)
        );
        CREATE TABLE alert_monitor (
            id bigint PRIMARY KEY CHECK (id = 1),
            checked_at text NOT NULL,
            check_seconds double precision NOT NULL
        )
    """),
    # The labelled set: examples from hits' checks and from confirmed search results
    # (hit_id optional, a source per row); the rows of 0200 were misread checks.
    ("0790_labelled_set", r"""
        CREATE TABLE labelled_examples_0790 (
            example_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            read_id text NOT NULL,
            source text NOT NULL CHECK (source IN ('hit-confirmed', 'hit-misread', 'search-confirmed',
                                                   'search-corrected')),
            hit_id bigint,
            crop bytea,
            read_text text NOT NULL,
            true_text text NOT NULL,
            model_version text NOT NULL,
            captured_at text NOT NULL,
            labelled_by text NOT NULL,
            labelled_at text NOT NULL
        );
        INSERT INTO labelled_examples_0790 (example_id, read_id, source, hit_id, crop, read_text, true_text,
                                            model_version, captured_at, labelled_by, labelled_at)
            SELECT example_id, read_id, 'hit-misread', hit_id, crop, read_text, true_text, model_version,
                   captured_at, labelled_by, labelled_at FROM labelled_examples ORDER BY example_id;
        DROP TABLE labelled_examples;
        ALTER TABLE labelled_examples_0790 RENAME TO labelled_examples;
        ALTER INDEX labelled_examples_0790_pkey RENAME TO labelled_examples_pkey;
        SELECT setval(pg_get_serial_sequence('labelled_examples', 'example_id'),
                      coalesce(max(example_id), 0) + 1, false) FROM labelled_examples;
        CREATE INDEX labelled_examples_at ON labelled_examples(labelled_at);
        CREATE INDEX labelled_examples_read ON labelled_examples(read_id)
    """),
    # The twin of SQLite's 0700: a later, better read of the same vehicle pass
    # (applied = 1 moved the unverified hit to it; 0 = noted only).
    ("0700_hit_upgrades", r"""
        CREATE TABLE hit_upgrades (
            upgrade_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            hit_id bigint NOT NULL REFERENCES hits(hit_id) ON DELETE CASCADE,
            at text NOT NULL,
            applied integer NOT NULL CHECK (applied IN (0, 1)),
            read_id text NOT NULL,
            match_kind text NOT NULL CHECK (match_kind IN ('exact', 'alternate', 'confusable')),
            matched_text text NOT NULL,
            captured_at text NOT NULL,
            previous_read_id text NOT NULL,
            previous_kind text NOT NULL,
            previous_text text NOT NULL,
            previous_captured_at text NOT NULL,
            UNIQUE (hit_id, read_id)
        )
    """),
    # The twin of SQLite's 0800: deliveries of hit upgrades share the hits' queue (upgrade_id
    # NULL: the hit itself, one per hit and receiver; else one per upgrade and receiver).
    ("0800_hit_upgrade_deliveries", r"""
        ALTER TABLE webhook_deliveries ADD COLUMN upgrade_id bigint;
        ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_hit_id_endpoint_key;
        CREATE UNIQUE INDEX webhook_deliveries_hit ON webhook_deliveries(hit_id, endpoint) WHERE upgrade_id IS NULL;
        CREATE UNIQUE INDEX webhook_deliveries_upgrade ON webhook_deliveries(upgrade_id, endpoint)
            WHERE upgrade_id IS NOT NULL;
        CREATE INDEX webhook_deliveries_of_hit ON webhook_deliveries(hit_id)
    """),
]
