-- 0009_audit_log: the operator API's audit log, one row per mutating call
-- (host/admin/audit.h has the writer and the reader; docs/operations.md,
-- "Tokens and the audit log", how to read it).
--
-- Rows are only ever inserted, by evbusd's audit thread in batches.  A
-- token's name is recorded, never the token.  tenant is the calling
-- token's tenant, '*' for a token of every tenant.  target is an entry id
-- or a filter's JSON text, as the caller gave it; count is NULL when the
-- call affects no countable set.  result is "ok" or "error: <reason>".
--
-- Reads are newest first, by id: the primary key serves an admin's read of
-- every tenant, and (tenant, id DESC) a tenant's read, so that a tenant's
-- page never walks other tenants' rows.  Retention is the operator's:
-- DELETE FROM audit_log WHERE at < now() - interval '...'.

CREATE TABLE audit_log (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL,
    token      text        NOT NULL,
    tenant     text        NOT NULL,
    action     text        NOT NULL,
    target     text,
    count      bigint,
    result     text        NOT NULL,
    request_id text
);

CREATE INDEX audit_log_tenant_id ON audit_log (tenant, id DESC);
