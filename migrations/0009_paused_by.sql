-- pgrelay 0009: who paused a type, beside when and why, for the status page, the console
-- and `pgrelay status` (pgrelay.pause(), triggers/45_pause.sql). Pauses made before it say
-- nobody.
ALTER TABLE pgrelay.paused_types ADD COLUMN paused_by text;

COMMENT ON COLUMN pgrelay.paused_types.paused_by IS
  'Who paused it: user@host from the CLI, "console" from the console, else the database role.';
