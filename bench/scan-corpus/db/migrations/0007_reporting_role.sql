-- Read-only role for the BI dashboards.
CREATE ROLE reporting WITH LOGIN PASSWORD 'T!Do5wnfG8PDf3icEhwm.lUEFsvpP179eVcK';
GRANT CONNECT ON DATABASE shop TO reporting;
GRANT USAGE ON SCHEMA public TO reporting;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO reporting;

-- audit: which migration created this role
INSERT INTO schema_audit (migration, checksum) VALUES ('0007', '477b64cd7e2cac6b08a36730b25e9ae15181c39e95d1f687019e325fc908eb11');
