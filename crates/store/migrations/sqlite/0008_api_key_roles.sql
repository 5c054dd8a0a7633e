-- API key roles (issue 14): `admin` keys manage the organisation's keys and credentials,
-- `member` keys use everything else. Keys created before roles existed could do everything,
-- so they become admins.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
