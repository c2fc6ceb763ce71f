-- Foundation: settings, partners and keys, modules and versions, module state.
-- Timestamps are Unix milliseconds (BIGINT) so SQLite and PostgreSQL agree.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE partners (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    display_name TEXT    NOT NULL,
    status       TEXT    NOT NULL DEFAULT 'active',
    created_at   BIGINT  NOT NULL
);

CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id BIGINT  NOT NULL REFERENCES partners(id),
    key_hash   TEXT    NOT NULL UNIQUE,
    prefix     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_partner ON api_keys(partner_id);

CREATE TABLE modules (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id        BIGINT  NOT NULL REFERENCES partners(id),
    name              TEXT    NOT NULL,
    active_version_id BIGINT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    UNIQUE (partner_id, name)
);

CREATE TABLE module_versions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    module_id    BIGINT  NOT NULL REFERENCES modules(id),
    seq          BIGINT  NOT NULL,
    label        TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    services     TEXT    NOT NULL,
    wit_version  TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    size_bytes   BIGINT  NOT NULL,
    wasm         BLOB    NOT NULL,
    uploaded_at  BIGINT  NOT NULL,
    UNIQUE (module_id, seq),
    UNIQUE (module_id, sha256)
);

-- Activation history: each row makes `version_id` active; `previous_version_id` is
-- what was active before, so a rollback walks back one step at a time.
CREATE TABLE module_activations (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    module_id           BIGINT  NOT NULL REFERENCES modules(id),
    version_id          BIGINT  NOT NULL REFERENCES module_versions(id),
    previous_version_id BIGINT,
    action              TEXT    NOT NULL,
    actor               TEXT    NOT NULL,
    at                  BIGINT  NOT NULL
);
CREATE INDEX module_activations_module ON module_activations(module_id, id);

CREATE TABLE module_faults (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id BIGINT  NOT NULL REFERENCES partners(id),
    module_id  BIGINT  NOT NULL REFERENCES modules(id),
    version_id BIGINT  NOT NULL REFERENCES module_versions(id),
    export     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    at         BIGINT  NOT NULL
);
CREATE INDEX module_faults_version ON module_faults(version_id, id);

CREATE TABLE kv_entries (
    partner_id BIGINT NOT NULL REFERENCES partners(id),
    key        TEXT   NOT NULL,
    value      BLOB   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (partner_id, key)
);

CREATE TABLE content_items (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id BIGINT  NOT NULL REFERENCES partners(id),
    collection TEXT    NOT NULL,
    position   BIGINT  NOT NULL,
    item_key   TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    tags       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    UNIQUE (partner_id, collection, position),
    UNIQUE (partner_id, collection, item_key)
);

-- Subscribers are opaque ids per partner; the phone number never reaches a module.
CREATE TABLE subscribers (
    id         TEXT   PRIMARY KEY,
    partner_id BIGINT NOT NULL REFERENCES partners(id),
    msisdn     TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX subscribers_partner_msisdn ON subscribers(partner_id, msisdn);

CREATE TABLE subscriber_attributes (
    partner_id    BIGINT NOT NULL REFERENCES partners(id),
    subscriber_id TEXT   NOT NULL REFERENCES subscribers(id),
    name          TEXT   NOT NULL,
    value         TEXT   NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (partner_id, subscriber_id, name)
);
