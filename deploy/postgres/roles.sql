-- The hub's database and roles. Run once on the primary, as a superuser:
--   psql -v ON_ERROR_STOP=1 -v owner_password="$(cat owner.pw)" -v app_password="$(cat app.pw)" \
--        -f deploy/postgres/roles.sql
-- Running it again changes nothing (and resets the two passwords to the ones given).
--
-- agenthub_owner  owns the database, the hub schema and every region_<län> schema; migrations
--                 (agenthub db upgrade) and region onboarding (agenthub region add / regions
--                 sync) run as this role. Not a superuser, cannot create roles or databases.
-- agenthub_app    what the web and worker processes log in as: reads and writes rows, nothing
--                 else (no DDL, no TRUNCATE, no schema of its own). The grants reach the
--                 per-region schemas the owner creates later through default privileges.

SELECT 'CREATE ROLE agenthub_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'agenthub_owner') \gexec
SELECT 'CREATE ROLE agenthub_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'agenthub_app') \gexec
ALTER ROLE agenthub_owner PASSWORD :'owner_password';
ALTER ROLE agenthub_app PASSWORD :'app_password';

SELECT 'CREATE DATABASE agenthub OWNER agenthub_owner'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'agenthub') \gexec
REVOKE ALL ON DATABASE agenthub FROM PUBLIC;
GRANT CONNECT ON DATABASE agenthub TO agenthub_app;

\connect agenthub
-- Nobody but the owner creates anything, in public either.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO agenthub_owner;

-- Every schema, table and sequence the owner creates from now on (the hub schema, each
-- region's schema at onboarding) is usable by the app, with these rights and no more.
ALTER DEFAULT PRIVILEGES FOR ROLE agenthub_owner GRANT USAGE ON SCHEMAS TO agenthub_app;
ALTER DEFAULT PRIVILEGES FOR ROLE agenthub_owner
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO agenthub_app;
ALTER DEFAULT PRIVILEGES FOR ROLE agenthub_owner GRANT USAGE, SELECT ON SEQUENCES TO agenthub_app;
