-- The registry of signals (pgrecs.signals, migration 0035): what a placement may weight, how
-- scoring reads each signal, and the wording of its reason.
--
-- A neighbour signal (kind 'neighbors') is data only: a row here and its lists in
-- pgrecs.item_neighbors (published by pgrecs.publish_signals from any relation of
-- (tenant_id, item_id, neighbor_item_id, score, rank)); rank_items takes candidates from them,
-- scores, explains and the evaluation measures them with no code naming the signal. An item
-- signal (kind 'item') is a value per item that rank_items reads from a column, so a new one
-- also needs that column read there.

-- pgrecs.item_neighbors.signal references pgrecs.signals, checked once per statement (as the
-- event log's references are, sql/015_event_integrity.sql): a per-row foreign key would cost
-- more than the rows a refresh publishes (migration 0011).
create or replace function pgrecs.check_signal_references()
returns trigger
language plpgsql
security definer  -- sees every tenant's lists (row-level security) when a registry row changes
set search_path = pg_catalog
as $$
declare
    bad text;
begin
    if tg_table_name = 'item_neighbors' then
        perform 1 from pgrecs.signals s
        where s.signal in (select distinct a.signal from added a)
        for key share;
        select a.signal into bad
        from (select distinct a.signal from added a) as a
        where not exists (select 1 from pgrecs.signals s where s.signal = a.signal and s.kind = 'neighbors')
        limit 1;
        if found then
            raise exception using
                errcode = 'foreign_key_violation',
                message = format('neighbour lists of signal %s, which pgrecs.signals does not register as a neighbour signal',
                                 coalesce(bad, 'null'));
        end if;
    else
        select g.signal into bad
        from removed as g
        where exists (select 1 from pgrecs.item_neighbors n where n.signal = g.signal)
          and not exists (select 1 from pgrecs.signals s where s.signal = g.signal and s.kind = 'neighbors')
        limit 1;
        if found then
            raise exception using
                errcode = 'foreign_key_violation',
                message = format('signal %s still has neighbour lists in pgrecs.item_neighbors: delete them first', bad);
        end if;
    end if;
    return null;
end
$$;
comment on function pgrecs.check_signal_references() is
    'Statement-level foreign key of pgrecs.item_neighbors.signal on pgrecs.signals: new lists name a registered neighbour signal, and a signal with lists stays registered.';

create or replace trigger item_neighbors_check_signal_on_insert
    after insert on pgrecs.item_neighbors
    referencing new table as added
    for each statement execute function pgrecs.check_signal_references();

create or replace trigger item_neighbors_check_signal_on_update
    after update on pgrecs.item_neighbors
    referencing new table as added
    for each statement execute function pgrecs.check_signal_references();

create or replace trigger signals_keep_referenced_on_delete
    after delete on pgrecs.signals
    referencing old table as removed
    for each statement execute function pgrecs.check_signal_references();

create or replace trigger signals_keep_referenced_on_update
    after update on pgrecs.signals
    referencing old table as removed
    for each statement execute function pgrecs.check_signal_references();
