-- One row per resource version. vid is the global write sequence: the write
-- that created this version. vto is the vid of the write that superseded it
-- (max int64 while current). A search at snapshot S sees the versions with
-- vid <= S < vto, which keeps paging stable under concurrent writes.
CREATE TABLE res (
  vid          INTEGER PRIMARY KEY,
  type         TEXT    NOT NULL,
  id           TEXT    NOT NULL,
  version      INTEGER NOT NULL,
  vto          INTEGER NOT NULL DEFAULT 9223372036854775807,
  deleted      INTEGER NOT NULL DEFAULT 0,
  lu           INTEGER NOT NULL, -- lastUpdated, unix milliseconds
  body         BLOB
);
CREATE UNIQUE INDEX res_type_id_version ON res(type, id, version);
CREATE INDEX res_type_vid ON res(type, vid);

-- Search index rows belong to one version (vid) and are never rewritten.
CREATE TABLE token_idx (
  type   TEXT NOT NULL,
  param  TEXT NOT NULL,
  value  TEXT NOT NULL,
  system TEXT NOT NULL,
  vid    INTEGER NOT NULL,
  PRIMARY KEY (type, param, value, system, vid)
) WITHOUT ROWID;
CREATE INDEX token_idx_system ON token_idx(type, param, system);

CREATE TABLE string_idx (
  type  TEXT NOT NULL,
  param TEXT NOT NULL,
  norm  TEXT NOT NULL, -- lower case, accents removed
  raw   TEXT NOT NULL,
  vid   INTEGER NOT NULL,
  PRIMARY KEY (type, param, norm, raw, vid)
) WITHOUT ROWID;

CREATE TABLE date_idx (
  type  TEXT NOT NULL,
  param TEXT NOT NULL,
  lo    INTEGER NOT NULL, -- unix ms, inclusive
  hi    INTEGER NOT NULL, -- unix ms, inclusive
  vid   INTEGER NOT NULL
);
CREATE INDEX date_idx_vid ON date_idx(vid, param);
CREATE INDEX date_idx_param ON date_idx(type, param, lo);

CREATE TABLE ref_idx (
  type  TEXT NOT NULL,
  param TEXT NOT NULL,
  ttype TEXT NOT NULL,
  tid   TEXT NOT NULL,
  base  TEXT NOT NULL, -- '' for references to this server
  vid   INTEGER NOT NULL,
  PRIMARY KEY (type, param, tid, ttype, base, vid)
) WITHOUT ROWID;
CREATE INDEX ref_idx_vid ON ref_idx(vid, param);

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
