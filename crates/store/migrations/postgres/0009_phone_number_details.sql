-- What Burki's organisation phone-number API shows and edits (issue 14): a display name, the
-- Twilio IncomingPhoneNumber SID and capabilities (from sync or assignment), the countries
-- allowed to call the number (JSON array; NULL or empty = all), and whether the number is still
-- in the organisation's Twilio account (a sync that no longer finds it deactivates it).
ALTER TABLE phone_numbers ADD COLUMN friendly_name TEXT;
ALTER TABLE phone_numbers ADD COLUMN twilio_sid TEXT;
ALTER TABLE phone_numbers ADD COLUMN capabilities TEXT NOT NULL DEFAULT '{}';
ALTER TABLE phone_numbers ADD COLUMN allowed_country_codes TEXT;
ALTER TABLE phone_numbers ADD COLUMN is_active BOOLEAN NOT NULL DEFAULT TRUE;
