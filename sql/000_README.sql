-- sql/: idempotent files (create or replace), applied in name order inside the migration
-- transaction every time `pgrecs migrate` reaches head. Run-once DDL belongs in migrations/.
select 1;
