-- pgrelay 0002: event types an operator paused. Paused types are not claimed;
-- their events keep accumulating as pending until the type is resumed.
CREATE TABLE pgrelay.paused_types (
  event_type text PRIMARY KEY,
  paused_at  timestamptz NOT NULL DEFAULT now(),
  reason     text
);

COMMENT ON TABLE pgrelay.paused_types IS
  'pgrelay pause/resume: the claim query skips events of these types (one primary-key probe per candidate).';
