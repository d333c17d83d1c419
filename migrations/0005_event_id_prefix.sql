-- pgrelay 0005: a prefix unique to this database for the ids deliveries carry (webhook-id,
-- Nats-Msg-Id, the CloudEvents id: '<prefix>-<event id>'). Event ids are unique within one
-- database only, so a receiver fed by two databases would drop one's events as duplicates of
-- the other's. Generated once, here: 64 random bits as 16 hex digits. A copy of the database
-- (a dump restored elsewhere, CREATE DATABASE ... TEMPLATE) keeps it; give a copy that feeds
-- the same receivers its own with UPDATE pgrelay.settings SET value = ... (relays read it at start).
INSERT INTO pgrelay.settings VALUES ('event_id_prefix', left(md5(gen_random_uuid()::text), 16))
  ON CONFLICT (name) DO NOTHING;
