"""Merchant console: the `merchant` scope, console sessions, and the audit trail of business rules.

The functions that read and write these tables (session start, touch and end; the rule audit
trigger; rule edits) live in the idempotent sql/065_rules.sql and sql/068_console_sessions.sql.

Revision ID: 0019_console
Revises: 0017_model_lineage
Create Date: 2026-11-27
"""

from alembic import op

revision = "0019_console"
down_revision = "0017_model_lineage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table pgrecs.api_keys drop constraint api_keys_scopes_check;
        alter table pgrecs.api_keys add constraint api_keys_scopes_check
            check (cardinality(scopes) > 0 and scopes <@ array['read', 'write', 'admin', 'merchant']);
        comment on table pgrecs.api_keys is
            'API keys: sha256 of the key, tenant and scopes (read: recommendations, similar, search; write: events, items; admin: keys, placements, metrics; merchant: the console).';

        -- A console login: an API key (merchant or admin scope) exchanged for a random session
        -- token kept in an HttpOnly cookie. Only the token's sha256 is stored; the API role cannot
        -- read this table (sql/070_security.sql), it goes through SECURITY DEFINER functions.
        create table pgrecs.console_sessions (
            session_id bigint generated always as identity primary key,
            tenant_id text not null references pgrecs.tenants,
            key_id bigint not null references pgrecs.api_keys on delete cascade,
            token_sha256 bytea not null unique check (length(token_sha256) = 32),
            created_at timestamptz not null default now(),
            last_seen_at timestamptz not null default now(),
            ended_at timestamptz
        );
        create index console_sessions_key on pgrecs.console_sessions (key_id);
        comment on table pgrecs.console_sessions is
            'Merchant console sessions: sha256 of the session token, the API key and tenant it stands for, created and last seen (idle expiry), ended at logout.';

        -- Every insert, update and delete of a business rule, with who did it (the console key,
        -- or the database user of a CLI or SQL session) and the row before and after.
        create table pgrecs.business_rule_changes (
            change_id bigint generated always as identity primary key,
            tenant_id text not null references pgrecs.tenants,
            rule_id bigint not null,
            action text not null check (action in ('insert', 'update', 'delete')),
            actor text not null,
            changed_at timestamptz not null default now(),
            old_row jsonb,
            new_row jsonb
        );
        create index business_rule_changes_rule on pgrecs.business_rule_changes (tenant_id, rule_id, changed_at);
        create index business_rule_changes_time on pgrecs.business_rule_changes (tenant_id, changed_at desc);
        comment on table pgrecs.business_rule_changes is
            'Audit trail of pgrecs.business_rules: one row per change (action, actor, time, old and new row), written by a trigger.';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop trigger if exists business_rules_audit on pgrecs.business_rules;
        drop function if exists pgrecs.audit_business_rule_change();
        drop function if exists pgrecs.console_session_start(bytea, bytea, interval);
        drop function if exists pgrecs.console_session_touch(bytea, interval);
        drop function if exists pgrecs.console_session_end(bytea);
        -- functions of sql/062_rules.sql whose types depend on pgrecs.business_rules
        drop function if exists pgrecs.rule_row(bigint, text, text, text, text, text, text, numeric, real, integer,
                                                timestamptz, timestamptz, boolean);
        drop function if exists pgrecs.check_rule(pgrecs.business_rules);
        drop function if exists pgrecs.rule_status(pgrecs.business_rules, timestamptz);
        drop table if exists pgrecs.business_rule_changes;
        drop table if exists pgrecs.console_sessions;
        -- a merchant-only key has no meaning without the console
        update pgrecs.api_keys set scopes = array_remove(scopes, 'merchant') where 'merchant' = any(scopes);
        delete from pgrecs.api_keys where cardinality(scopes) = 0;
        alter table pgrecs.api_keys drop constraint api_keys_scopes_check;
        alter table pgrecs.api_keys add constraint api_keys_scopes_check
            check (cardinality(scopes) > 0 and scopes <@ array['read', 'write', 'admin']);
        """
    )
