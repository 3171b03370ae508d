-- authkit key/value store: signing keys, clients, refresh tokens,
-- revocations. Values are JSON; expires is unix seconds, 0 = never.
CREATE TABLE IF NOT EXISTS authkit_kv (
  bucket  TEXT NOT NULL,
  key     TEXT NOT NULL,
  value   BLOB NOT NULL,
  expires INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (bucket, key)
);
CREATE INDEX IF NOT EXISTS authkit_kv_expires ON authkit_kv (expires);
