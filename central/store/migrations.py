"""SQLite schema migrations, applied in list order; each runs with its
``_migrations`` record in one transaction (see ``SQLiteStore.migrate``).

Never edit a migration that has shipped; append a new one. Names are
``NNNN_topic``; numbers are reserved per area so parallel work does not collide:
0001-0099 reads and ingest, 0100-0199 devices and enrollment, 0200-0299 governance,
0300-0399 hotlists and hits, 0400-0499 security (read tombstones), 0500-0599 the
browser console (passwords, sessions, device status), 0600-0699 fleet operations,
0790-0799 recognition (the labelled set for site adaptation).

A migration that creates or changes a governance table (anything but ``reads``
and ``read_images``) needs its twin in :mod:`.pg_migrations`, so the table is the
same on PostgreSQL (same columns, same order); ``db copy`` refuses a SQLite
file with a table or column PostgreSQL lacks.
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_reads", """
        CREATE TABLE reads (
            read_id TEXT NOT NULL UNIQUE,
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
        );
        CREATE INDEX reads_plate ON reads(plate, captured_at);
        CREATE INDEX reads_plate_folded ON reads(plate_folded, captured_at);
        CREATE INDEX reads_captured ON reads(captured_at);
        CREATE INDEX reads_device_camera ON reads(device_id, camera_id, captured_at);
        CREATE TABLE read_images (
            read_id TEXT NOT NULL REFERENCES reads(read_id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('crop', 'context')),
            jpeg BLOB NOT NULL,
            UNIQUE (read_id, kind)
        );
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
    # -- 0100-0199 devices and enrollment (central/fleet/registry.py) --
    ("0100_devices", """
        CREATE TABLE businesses (
            business_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            contact_name TEXT NOT NULL,
            contact_email TEXT NOT NULL,
            contact_phone TEXT NOT NULL,
            mou_id TEXT NOT NULL,
            shared_data TEXT NOT NULL,
            share_with TEXT NOT NULL,
            retention_days INTEGER NOT NULL,
            consent_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'withdrawn')),
            enrolled_at TEXT NOT NULL,
            enrolled_by TEXT NOT NULL,
            withdrawn_at TEXT,
            withdrawn_by TEXT
        );
        CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            location TEXT NOT NULL,
            latitude REAL, longitude REAL, heading REAL,
            cameras TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'suspended', 'revoked')),
            status_reason TEXT NOT NULL DEFAULT '',
            cert_serial TEXT,
            cert_expires_at TEXT,
            enrolled_by TEXT NOT NULL,
            enrolled_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX devices_owner ON devices(owner);
        CREATE TABLE device_certificates (
            serial TEXT PRIMARY KEY,
            device_id TEXT NOT NULL REFERENCES devices(device_id),
            issued_at TEXT NOT NULL,
            not_after TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE INDEX device_certificates_device ON device_certificates(device_id);
        CREATE TABLE enrollment_tokens (
            token_id TEXT PRIMARY KEY,
            secret_sha256 BLOB NOT NULL,
            device_id TEXT NOT NULL REFERENCES devices(device_id),
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT,
            used_serial TEXT
        );
        CREATE TABLE business_logins (
            login_id TEXT PRIMARY KEY,
            secret_sha256 BLOB NOT NULL,
            business_id TEXT NOT NULL REFERENCES businesses(business_id),
            name TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            disabled_at TEXT
        );
        CREATE TABLE registry_events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT NOT NULL,
            detail TEXT NOT NULL
        )
    """),
    # -- 0200-0299 governance (central/governance/: users.py, audit.py, retention.py, sharing.py; central/fleet/device_audit.py) --
    ("0200_governance", """
        CREATE TABLE users (
            name TEXT PRIMARY KEY,
            organization TEXT NOT NULL,
            role TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            last_active_at TEXT
        );
        CREATE TABLE user_tokens (
            token_sha256 TEXT PRIMARY KEY,
            user_name TEXT NOT NULL REFERENCES users(name),
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            organization TEXT NOT NULL,
            action TEXT NOT NULL,
            purpose TEXT NOT NULL,
            case_number TEXT NOT NULL,
            detail TEXT NOT NULL,
            result_count INTEGER NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX audit_log_at ON audit_log(at);
        CREATE TABLE hotlist (
            id INTEGER PRIMARY KEY,
            plate TEXT NOT NULL,
            source TEXT NOT NULL,
            added_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            added_by TEXT NOT NULL
        );
        CREATE INDEX hotlist_plate ON hotlist(plate);
        CREATE TABLE legal_holds (
            hold_id INTEGER PRIMARY KEY,
            case_number TEXT NOT NULL,
            plates TEXT NOT NULL,
            since TEXT NOT NULL,
            until TEXT NOT NULL,
            reason TEXT NOT NULL,
            review_on TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            requested_at TEXT NOT NULL,
            approved_by TEXT,
            approved_at TEXT,
            released_by TEXT,
            released_at TEXT
        );
        CREATE TABLE purge_runs (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            counts TEXT NOT NULL
        );
        CREATE TABLE agreements (
            agreement_id TEXT PRIMARY KEY,
            agency TEXT NOT NULL,
            agency_type TEXT NOT NULL,
            jurisdiction TEXT NOT NULL,
            effective_on TEXT NOT NULL,
            expires_on TEXT NOT NULL,
            scope TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE TABLE share_requests (
            request_id INTEGER PRIMARY KEY,
            agreement_id TEXT NOT NULL REFERENCES agreements(agreement_id),
            requesting_person TEXT NOT NULL,
            case_number TEXT NOT NULL,
            purpose TEXT NOT NULL,
            plates TEXT NOT NULL,
            since TEXT NOT NULL,
            until TEXT NOT NULL,
            entered_by TEXT NOT NULL,
            entered_at TEXT NOT NULL,
            status TEXT NOT NULL,
            decided_by TEXT,
            decided_at TEXT,
            decision_note TEXT,
            exported_at TEXT,
            exported_reads INTEGER,
            bundle_sha256 TEXT
        );
        CREATE TABLE device_audit (
            device_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            record TEXT NOT NULL,
            received_at TEXT NOT NULL,
            PRIMARY KEY (device_id, seq)
        ) WITHOUT ROWID
    """),
    # -- 0110: business users are governance users (role business); the separate login table goes --
    ("0110_drop_business_logins", """
        DROP TABLE business_logins
    """),
    # -- 0300-0399 hotlists and hits (central/hotlist/) --
    # Supersedes the minimal ``hotlist`` table of 0200: its rows move to a list
    # named "legacy" (category "legacy", version 1), then the table goes.
    ("0300_hotlists", """
        CREATE TABLE hotlists (
            list_id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            category TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            version INTEGER NOT NULL,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE hotlist_versions (
            list_id INTEGER NOT NULL REFERENCES hotlists(list_id),
            version INTEGER NOT NULL,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            action TEXT NOT NULL,
            counts TEXT NOT NULL,
            PRIMARY KEY (list_id, version)
        ) WITHOUT ROWID;
        CREATE TABLE hotlist_entries (
            entry_id INTEGER PRIMARY KEY,
            list_id INTEGER NOT NULL REFERENCES hotlists(list_id),
            plate TEXT NOT NULL,
            plate_folded TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL,
            source_agency TEXT NOT NULL,
            source_ref TEXT NOT NULL,
            case_number TEXT NOT NULL,
            entered_by TEXT NOT NULL,
            entered_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            added_version INTEGER NOT NULL,
            removed_version INTEGER,
            removed_at TEXT,
            removed_by TEXT
        );
        CREATE INDEX hotlist_entries_folded ON hotlist_entries(plate_folded) WHERE removed_version IS NULL;
        CREATE INDEX hotlist_entries_plate ON hotlist_entries(plate, entered_at);
        INSERT INTO hotlists (name, category, description, version, created_by, created_at)
            SELECT 'legacy', 'legacy', 'entries of the minimal hotlist before 0300', 1, 'migration-0300',
                   strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
            WHERE EXISTS (SELECT 1 FROM hotlist);
        INSERT INTO hotlist_versions (list_id, version, at, user, action, counts)
            SELECT list_id, 1, created_at, created_by, 'migrate',
                   json_object('added', (SELECT count(*) FROM hotlist)) FROM hotlists WHERE name = 'legacy';
        INSERT INTO hotlist_entries (list_id, plate, plate_folded, state, reason, source_agency, source_ref,
                                     case_number, entered_by, entered_at, expires_at, added_version)
            SELECT (SELECT list_id FROM hotlists WHERE name = 'legacy'), h.plate,
                   replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(h.plate,
                       'O', '0'), 'D', '0'), 'Q', '0'), 'I', '1'), 'L', '1'), 'B', '8'), 'S', '5'), 'Z', '2'),
                       'o', '0'), 'l', '1'),
                   '', 'entered in the minimal hotlist', h.source, '', '', h.added_by, h.added_at, h.expires_at, 1
            FROM hotlist h ORDER BY h.id;
        DROP TABLE hotlist;
        CREATE TABLE hits (
            hit_id INTEGER PRIMARY KEY AUTOINCREMENT,
            read_id TEXT NOT NULL,
            entry_id INTEGER NOT NULL,
            list_id INTEGER NOT NULL,
            list_name TEXT NOT NULL,
            list_version INTEGER NOT NULL,
            category TEXT NOT NULL,
            match_kind TEXT NOT NULL CHECK (match_kind IN ('exact', 'alternate', 'confusable')),
            matched_text TEXT NOT NULL,
            device_id TEXT NOT NULL,
            camera_id TEXT NOT NULL,
            captured_at TEXT NOT NULL,
            stored_at TEXT NOT NULL,
            hit_at TEXT NOT NULL,
            entry TEXT NOT NULL,
            visual TEXT CHECK (visual IN ('yes', 'misread')),
            visual_text TEXT,
            visual_by TEXT,
            visual_at TEXT,
            source TEXT CHECK (source IN ('yes', 'no-longer-wanted')),
            source_by TEXT,
            source_at TEXT,
            disposition TEXT CHECK (disposition IN ('dispatched', 'no-action', 'misread', 'stale-entry',
                                                    'duplicate')),
            disposition_by TEXT,
            disposition_at TEXT,
            note TEXT NOT NULL DEFAULT '',
            UNIQUE (read_id, entry_id)
        );
        CREATE INDEX hits_pass ON hits(entry_id, device_id, camera_id, captured_at);
        CREATE INDEX hits_captured ON hits(captured_at);
        CREATE INDEX hits_read ON hits(read_id);
        CREATE TABLE hotlist_matcher (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_rowid INTEGER NOT NULL
        );
        INSERT INTO hotlist_matcher VALUES (1, (SELECT coalesce(max(rowid), 0) FROM reads));
        CREATE TABLE labelled_examples (
            example_id INTEGER PRIMARY KEY,
            hit_id INTEGER NOT NULL,
            read_id TEXT NOT NULL,
            crop BLOB,
            read_text TEXT NOT NULL,
            true_text TEXT NOT NULL,
            model_version TEXT NOT NULL,
            captured_at TEXT NOT NULL,
            labelled_by TEXT NOT NULL,
            labelled_at TEXT NOT NULL
        );
        CREATE INDEX labelled_examples_at ON labelled_examples(labelled_at);
        CREATE TABLE webhook_deliveries (
            delivery_id INTEGER PRIMARY KEY,
            hit_id INTEGER NOT NULL,
            endpoint TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (hit_id, endpoint)
        );
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries(endpoint, next_at) WHERE status = 'pending';
        CREATE TABLE webhook_attempts (
            delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(delivery_id) ON DELETE CASCADE,
            attempt INTEGER NOT NULL,
            at TEXT NOT NULL,
            status_code INTEGER,
            error TEXT NOT NULL,
            seconds REAL NOT NULL,
            PRIMARY KEY (delivery_id, attempt)
        ) WITHOUT ROWID
    """),
    # -- 0400: security. Tombstones of reads the retention purge deleted, so a replayed
    # message never brings one back: 16 bytes of SHA-256 of the read id (not the id,
    # which would keep the capture time of a deleted read) and the purge day (tombstones
    # older than the longest read retention are dropped: such a replay is refused as expired).
    ("0400_read_tombstones", """
        CREATE TABLE read_tombstones (
            digest BLOB PRIMARY KEY,
            purged_on TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX read_tombstones_day ON read_tombstones(purged_on)
    """),
    # -- 0500-0599 the browser console (central/console/auth.py) --
    ("0500_console_sign_in", """
        CREATE TABLE user_passwords (
            user_name TEXT PRIMARY KEY REFERENCES users(name),
            hash TEXT NOT NULL,
            set_at TEXT NOT NULL,
            set_by TEXT NOT NULL,
            failures INTEGER NOT NULL DEFAULT 0,
            first_failure_at TEXT,
            locked_until TEXT
        );
        CREATE TABLE console_sessions (
            session_sha256 TEXT PRIMARY KEY,
            user_name TEXT NOT NULL REFERENCES users(name),
            csrf TEXT NOT NULL,
            created_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            ended_at TEXT
        );
        CREATE INDEX console_sessions_user ON console_sessions(user_name)
    """),
    ("0501_device_status", """
        CREATE TABLE device_status (
            device_id TEXT PRIMARY KEY,
            status TEXT NOT NULL CHECK (status IN ('online', 'offline')),
            changed_at TEXT NOT NULL
        )
    """),
    ("0600_device_health", """
        CREATE TABLE device_health (
            device_id TEXT PRIMARY KEY,
            received_at TEXT NOT NULL,
            skew_s REAL NOT NULL,
            doc TEXT NOT NULL
        );
        CREATE TABLE device_health_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device_id TEXT NOT NULL,
            received_at TEXT NOT NULL,
            skew_s REAL NOT NULL,
            doc TEXT NOT NULL
        );
        CREATE INDEX device_health_history_device ON device_health_history(device_id, id)
    """),
    # -- 0700-0719 hotlist hits, continued (central/hotlist/) --
    # A later, better read of the same vehicle pass (e.g. exact after confusable):
    # applied = 1 moved the unverified hit to it; 0 = noted only (a person had
    # already recorded a step on the hit's image). See central/hotlist/matcher.py.
    ("0700_hit_upgrades", """
        CREATE TABLE hit_upgrades (
            upgrade_id INTEGER PRIMARY KEY,
            hit_id INTEGER NOT NULL REFERENCES hits(hit_id) ON DELETE CASCADE,
            at TEXT NOT NULL,
            applied INTEGER NOT NULL CHECK (applied IN (0, 1)),
            read_id TEXT NOT NULL,
            match_kind TEXT NOT NULL CHECK (match_kind IN ('exact', 'alternate', 'confusable')),
            matched_text TEXT NOT NULL,
            captured_at TEXT NOT NULL,
            previous_read_id TEXT NOT NULL,
            previous_kind TEXT NOT NULL,
            previous_text TEXT NOT NULL,
            previous_captured_at TEXT NOT NULL,
            UNIQUE (hit_id, read_id)
        )
    """),
    # -- 0740-0759 fleet rollouts (central/fleet/rollout.py): device groups, releases offered
    # over MQTT, staged rollouts and each device's update state --
    ("0740_fleet_rollouts", """
        CREATE TABLE device_groups (
            group_id TEXT PRIMARY KEY,
            description TEXT NOT NULL DEFAULT '',
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE device_group_members (
            group_id TEXT NOT NULL REFERENCES device_groups(group_id),
            device_id TEXT NOT NULL REFERENCES devices(device_id),
            added_by TEXT NOT NULL,
            added_at TEXT NOT NULL,
            PRIMARY KEY (group_id, device_id)
        ) WITHOUT ROWID;
        CREATE TABLE release_bundles (
            sha256 TEXT PRIMARY KEY,
            version TEXT NOT NULL,
            size INTEGER NOT NULL,
            chunk_size INTEGER NOT NULL,
            chunks TEXT NOT NULL,
            key_id TEXT NOT NULL,
            allow_downgrade INTEGER NOT NULL,
            path TEXT NOT NULL,
            stored_at TEXT NOT NULL
        );
        CREATE TABLE rollouts (
            rollout_id INTEGER PRIMARY KEY AUTOINCREMENT,
            bundle_sha256 TEXT NOT NULL REFERENCES release_bundles(sha256),
            version TEXT NOT NULL,
            target_kind TEXT NOT NULL CHECK (target_kind IN ('group', 'device')),
            target TEXT NOT NULL,
            percent INTEGER NOT NULL CHECK (percent BETWEEN 1 AND 100),
            status TEXT NOT NULL CHECK (status IN ('active', 'paused', 'superseded')),
            status_reason TEXT NOT NULL DEFAULT '',
            max_failures INTEGER NOT NULL,
            max_failure_percent INTEGER NOT NULL,
            failures_at_resume INTEGER NOT NULL DEFAULT 0,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE device_updates (
            device_id TEXT PRIMARY KEY,
            rollout_id INTEGER NOT NULL REFERENCES rollouts(rollout_id),
            version TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            progress INTEGER NOT NULL DEFAULT 0,
            running_version TEXT,
            state_at TEXT NOT NULL,
            device_at_ms INTEGER NOT NULL DEFAULT 0,
            sent_at TEXT
        );
        CREATE INDEX device_updates_rollout ON device_updates(rollout_id, state)
    """),
    ("0760_device_configs", """
        CREATE TABLE device_configs (
            device_id TEXT NOT NULL,
            version INTEGER NOT NULL CHECK (version > 0),
            settings TEXT NOT NULL,
            message BLOB NOT NULL,
            key_id TEXT NOT NULL,
            issued_by TEXT NOT NULL,
            issued_at TEXT NOT NULL,
            published_at TEXT,
            PRIMARY KEY (device_id, version)
        );
        CREATE INDEX device_configs_unpublished ON device_configs(published_at) WHERE published_at IS NULL;
        CREATE TABLE device_config_state (
            device_id TEXT PRIMARY KEY,
            applied_version INTEGER NOT NULL,
            state TEXT NOT NULL,
            offered_version INTEGER,
            reason TEXT,
            reported_at TEXT NOT NULL,
            received_at TEXT NOT NULL
        )
    """),
    # -- 0780: fleet alerts pushed (central/fleet/alert_feed.py): one row per episode (raised, cleared),
    # the events `device alerts --watch` follows, webhook deliveries and their attempts (as 0300's).
    ("0780_alert_feed", """
        CREATE TABLE device_alerts (
            alert_id INTEGER PRIMARY KEY,
            device_id TEXT NOT NULL,
            owner TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL,
            since TEXT,
            raised_at TEXT NOT NULL,
            cleared_at TEXT
        );
        CREATE UNIQUE INDEX device_alerts_open ON device_alerts(device_id, kind, subject) WHERE cleared_at IS NULL;
        CREATE TABLE alert_events (
            event_id INTEGER PRIMARY KEY,
            alert_id INTEGER NOT NULL REFERENCES device_alerts(alert_id) ON DELETE CASCADE,
            event TEXT NOT NULL CHECK (event IN ('raised', 'cleared')),
            at TEXT NOT NULL
        );
        CREATE INDEX alert_events_alert ON alert_events(alert_id);
        CREATE TABLE alert_deliveries (
            delivery_id INTEGER PRIMARY KEY,
            event_id INTEGER NOT NULL REFERENCES alert_events(event_id) ON DELETE CASCADE,
            endpoint TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (event_id, endpoint)
        );
        CREATE INDEX alert_deliveries_due ON alert_deliveries(endpoint, next_at) WHERE status = 'pending';
        CREATE TABLE alert_attempts (
            delivery_id INTEGER NOT NULL REFERENCES alert_deliveries(delivery_id) ON DELETE CASCADE,
            attempt INTEGER NOT NULL,
            at TEXT NOT NULL,
            status_code INTEGER,
            error TEXT NOT NULL,
            seconds REAL NOT NULL,
            PRIMARY KEY (delivery_id, attempt)
        ) WITHOUT ROWID;
        CREATE TABLE alert_monitor (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            checked_at TEXT NOT NULL,
            check_seconds REAL NOT NULL
        )
    """),
    # -- 0790-0799 recognition: the labelled set (central/governance/labels.py). Examples come
    # from hits' visual checks (yes and misread) and from operators' confirmations of search
    # results, so hit_id becomes optional and each row names its source; rows of 0300 were
    # misread checks. Each example is tied to its read (the purge deletes it with the read).
    ("0790_labelled_set", """
        CREATE TABLE labelled_examples_0790 (
            example_id INTEGER PRIMARY KEY,
            read_id TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('hit-confirmed', 'hit-misread', 'search-confirmed',
                                                   'search-corrected')),
            hit_id INTEGER,
            crop BLOB,
            read_text TEXT NOT NULL,
            true_text TEXT NOT NULL,
            model_version TEXT NOT NULL,
            captured_at TEXT NOT NULL,
            labelled_by TEXT NOT NULL,
            labelled_at TEXT NOT NULL
        );
        INSERT INTO labelled_examples_0790 (example_id, read_id, source, hit_id, crop, read_text, true_text,
                                            model_version, captured_at, labelled_by, labelled_at)
            SELECT example_id, read_id, 'hit-misread', hit_id, crop, read_text, true_text, model_version,
                   captured_at, labelled_by, labelled_at FROM labelled_examples ORDER BY example_id;
        DROP TABLE labelled_examples;
        ALTER TABLE labelled_examples_0790 RENAME TO labelled_examples;
        CREATE INDEX labelled_examples_at ON labelled_examples(labelled_at);
        CREATE INDEX labelled_examples_read ON labelled_examples(read_id)
    """),
    # -- 0800-0819 hotlist hits, follow-ups (central/hotlist/) --
    # Webhook deliveries of hit upgrades (central/hotlist/webhooks.py): a delivery row is now a
    # hit (upgrade_id NULL, one per hit and receiver, as before) or an upgrade of that hit (the
    # hit_upgrades row; one per upgrade and receiver), so both share one queue, one id sequence
    # (X-ALPR-Delivery, the receivers' idempotency key) and one sender. SQLite cannot drop the
    # old UNIQUE (hit_id, endpoint), so both tables are rebuilt (the attempts with them: dropping
    # the deliveries would cascade to them); the new column goes last, as on PostgreSQL.
    ("0800_hit_upgrade_deliveries", """
        CREATE TABLE webhook_deliveries_0800 (
            delivery_id INTEGER PRIMARY KEY,
            hit_id INTEGER NOT NULL,
            endpoint TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            upgrade_id INTEGER
        );
        INSERT INTO webhook_deliveries_0800 (delivery_id, hit_id, endpoint, status, attempts, next_at, created_at)
            SELECT delivery_id, hit_id, endpoint, status, attempts, next_at, created_at FROM webhook_deliveries
            ORDER BY delivery_id;
        CREATE TABLE webhook_attempts_0800 (
            delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries_0800(delivery_id) ON DELETE CASCADE,
            attempt INTEGER NOT NULL,
            at TEXT NOT NULL,
            status_code INTEGER,
            error TEXT NOT NULL,
            seconds REAL NOT NULL,
            PRIMARY KEY (delivery_id, attempt)
        ) WITHOUT ROWID;
        INSERT INTO webhook_attempts_0800 SELECT delivery_id, attempt, at, status_code, error, seconds
            FROM webhook_attempts;
        DROP TABLE webhook_attempts;
        DROP TABLE webhook_deliveries;
        ALTER TABLE webhook_deliveries_0800 RENAME TO webhook_deliveries;
        ALTER TABLE webhook_attempts_0800 RENAME TO webhook_attempts;
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries(endpoint, next_at) WHERE status = 'pending';
        CREATE UNIQUE INDEX webhook_deliveries_hit ON webhook_deliveries(hit_id, endpoint) WHERE upgrade_id IS NULL;
        CREATE UNIQUE INDEX webhook_deliveries_upgrade ON webhook_deliveries(upgrade_id, endpoint)
            WHERE upgrade_id IS NOT NULL;
        CREATE INDEX webhook_deliveries_of_hit ON webhook_deliveries(hit_id)
    """),
]
