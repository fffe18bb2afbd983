//! The schema: versioned migrations, applied in order on open
//! (`PRAGMA user_version` counts those applied).

/// Schema migrations, in order; `user_version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        settings TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL
    );
    CREATE TABLE agents (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        id TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE tickets (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        id TEXT NOT NULL,
        data TEXT NOT NULL,
        tier TEXT,
        assignee TEXT,
        status TEXT NOT NULL,
        escalated_at TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE INDEX tickets_escalated ON tickets (tenant, escalated_at);
    CREATE INDEX tickets_assignee ON tickets (tenant, assignee);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        received_at TEXT NOT NULL,
        idempotency_key TEXT,
        processed INTEGER NOT NULL DEFAULT 0,
        response TEXT
    );
    CREATE INDEX events_ticket ON events (tenant, ticket, seq);
    CREATE UNIQUE INDEX events_idempotency ON events (tenant, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX events_unprocessed ON events (processed) WHERE processed = 0;
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        at TEXT NOT NULL,
        cause TEXT NOT NULL,
        escalated INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX decisions_ticket ON decisions (tenant, ticket, id);
    CREATE TABLE audit (
        decision INTEGER NOT NULL REFERENCES decisions(id),
        idx INTEGER NOT NULL,
        plugin TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (decision, idx)
    );
    CREATE TABLE fired (
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        key TEXT NOT NULL,
        decision INTEGER NOT NULL,
        PRIMARY KEY (tenant, ticket, key)
    );
    CREATE TABLE timers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        kind TEXT NOT NULL,
        due_at INTEGER NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        done_at TEXT,
        outcome TEXT
    );
    CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';
    CREATE INDEX timers_ticket ON timers (tenant, ticket, state);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL,
        address TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX deliveries_pending ON deliveries (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX deliveries_ticket ON deliveries (tenant, ticket);
    CREATE INDEX deliveries_recent ON deliveries (tenant, channel, address, created_at);
    CREATE TABLE feed (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        agent TEXT NOT NULL,
        ticket TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX feed_agent ON feed (tenant, agent, id);
    "#,
    // 2: plugin versions per tenant, the slot each name occupies, and the
    // change log.
    r#"
    CREATE TABLE plugin_versions (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        manifest TEXT NOT NULL,
        wasm BLOB NOT NULL,
        digest TEXT NOT NULL,
        fixtures TEXT NOT NULL,
        validation TEXT NOT NULL,
        source TEXT NOT NULL,
        uploaded_at TEXT NOT NULL,
        uploaded_by TEXT NOT NULL,
        PRIMARY KEY (tenant, name, version)
    );
    CREATE TABLE plugin_slots (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        version TEXT,
        mode TEXT,
        previous TEXT,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE plugin_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        name TEXT NOT NULL,
        version TEXT,
        detail TEXT NOT NULL
    );
    CREATE INDEX plugin_changes_tenant ON plugin_changes (tenant, id);
    CREATE INDEX decisions_at ON decisions (tenant, at);
    "#,
    // 3: events whose decision failed (processed = 2, with the reason),
    // the hash of the request an idempotency key came with, and attempts
    // per timer (a failing timer backs off, then is dead-lettered).
    r#"
    ALTER TABLE events ADD COLUMN error TEXT;
    ALTER TABLE events ADD COLUMN request_hash TEXT;
    ALTER TABLE timers ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_failed ON events (tenant, seq) WHERE processed = 2;
    "#,
    // 4: deliveries carry their ticket's urgency (0 critical … 3 low) so
    // critical notifications are sent first; a tenant's token can be
    // revoked.
    r#"
    ALTER TABLE deliveries ADD COLUMN priority INTEGER NOT NULL DEFAULT 2;
    CREATE INDEX deliveries_queue ON deliveries (priority, next_attempt_at)
        WHERE status = 'pending';
    ALTER TABLE tenants ADD COLUMN revoked_at TEXT;
    "#,
    // 5: the queue reads each tenant's pending deliveries on their own,
    // from the index alone (`status` is in it so it covers the look-up),
    // so one tenant's backlog costs no one else a scan. Settings carry a
    // revision, so their parsed form is cached until they change.
    r#"
    DROP INDEX deliveries_queue;
    CREATE INDEX deliveries_fair
        ON deliveries (tenant, priority, next_attempt_at, id, address, status)
        WHERE status = 'pending';
    ALTER TABLE tenants ADD COLUMN settings_rev INTEGER NOT NULL DEFAULT 0;
    "#,
    // 6: a ticket's conversation is kept apart from the rest of its state,
    // in batches (the messages one write added, in order): a change to a
    // ticket writes what changed, not a megabyte of conversation again.
    r#"
    CREATE TABLE conversation (
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        first INTEGER NOT NULL,
        messages TEXT NOT NULL,
        PRIMARY KEY (tenant, ticket, first)
    );
    INSERT INTO conversation (tenant, ticket, first, messages)
        SELECT tenant, id, 0, json_extract(data, '$.ticket.messages') FROM tickets
        WHERE json_array_length(data, '$.ticket.messages') > 0;
    ALTER TABLE tickets ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
    UPDATE tickets SET
        messages = coalesce(json_array_length(data, '$.ticket.messages'), 0),
        data = json_set(data, '$.ticket.messages', json('[]'));
    "#,
    // 7: the crash-loop guard's window per plugin version, shared by
    // every instance on the database: the outcomes of its last calls
    // ('1' failed, '0' not), oldest first, and its last error.
    r#"
    CREATE TABLE plugin_health (
        tenant TEXT NOT NULL,
        plugin TEXT NOT NULL,
        recent TEXT NOT NULL,
        last_error TEXT NOT NULL,
        PRIMARY KEY (tenant, plugin)
    );
    "#,
    // 8: the digest window's look for the last delivery to an address
    // reads status from the index, not the row: the deliveries held for a
    // digest (most of a busy address's window) are passed over without a
    // table lookup each.
    r#"
    DROP INDEX deliveries_recent;
    CREATE INDEX deliveries_recent ON deliveries (tenant, channel, address, created_at, status);
    "#,
    // 9: a decision's audit trail is keyed by the row id itself
    // (decision × 65,536 + the call's index; a decision makes at most a
    // few dozen calls), and the keys acted on are a table without row ids,
    // so each is one b-tree: their primary keys were indexes of their own,
    // a page more written for most decisions.
    r#"
    CREATE TABLE audit_keyed (
        key INTEGER PRIMARY KEY,
        decision INTEGER NOT NULL REFERENCES decisions(id),
        idx INTEGER NOT NULL CHECK (idx >= 0 AND idx < 65536),
        plugin TEXT NOT NULL,
        data TEXT NOT NULL
    );
    INSERT INTO audit_keyed (key, decision, idx, plugin, data)
        SELECT decision * 65536 + idx, decision, idx, plugin, data FROM audit;
    DROP TABLE audit;
    ALTER TABLE audit_keyed RENAME TO audit;
    CREATE TABLE fired_keyed (
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        key TEXT NOT NULL,
        decision INTEGER NOT NULL,
        PRIMARY KEY (tenant, ticket, key)
    ) WITHOUT ROWID;
    INSERT INTO fired_keyed (tenant, ticket, key, decision)
        SELECT tenant, ticket, key, decision FROM fired;
    DROP TABLE fired;
    ALTER TABLE fired_keyed RENAME TO fired;
    "#,
];
