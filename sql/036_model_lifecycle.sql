-- Model lifecycle: completeness of a model's shadow embedding, promotion, rollback and drop.
--
-- A candidate is embedded (its HNSW index, filter indexes and semantic lists built) by the same
-- queue and worker that keep the default model fresh, while the default serves. Promotion
-- switches the default in one transaction once the candidate is complete and its evaluation
-- passed the gate (or the promotion is forced): readers see the old model or the new one, never
-- a mix. The model it replaces goes on standby (still maintained) for an instant rollback.
--
-- Models are shared by every tenant: these functions see every tenant's rows (the owner's policy
-- with an empty pgrecs.tenant) and restore the caller's tenant setting on exit.

create or replace function pgrecs.model_completeness(model_id smallint)
returns table (
    tenant_id text,
    items bigint,
    embedded bigint,
    not_embeddable bigint,
    stale bigint,
    queued bigint,
    listed bigint,
    complete boolean
)
language sql
stable
set pgrecs.tenant = ''  -- noqa: PRS
as $$
    with current_text as (
        select i.tenant_id, i.item_id,
            pgrecs.item_text_sha256(
                pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes)) as sha
        from pgrecs.items as i
        where i.active
    ),
    per_item as (
        select c.tenant_id, c.item_id,
            exists (
                select from pgrecs.item_embeddings as e
                where e.item_id = c.item_id and e.model_id = model_completeness.model_id and e.text_sha256 = c.sha
            ) as is_embedded,
            exists (
                select from pgrecs.not_embeddable as x
                where x.item_id = c.item_id and x.model_id = model_completeness.model_id and x.text_sha256 = c.sha
            ) as is_poor
        from current_text as c
    ),
    listed as (
        select l.tenant_id, count(distinct l.item_id) as listed
        from pgrecs.semantic_lists as l
        where l.model_id = model_completeness.model_id
        group by l.tenant_id
    ),
    default_listed as (
        select distinct l.tenant_id
        from pgrecs.semantic_lists as l
        join pgrecs.embedding_models as m on m.model_id = l.model_id and m.is_default
    ),
    queued as (
        select q.tenant_id, count(*) as queued
        from pgrecs.embedding_queue as q
        where q.model_id = model_completeness.model_id
        group by q.tenant_id
    ),
    counted as (
        select p.tenant_id, count(*) as items, count(*) filter (where p.is_embedded) as embedded,
            count(*) filter (where p.is_poor and not p.is_embedded) as not_embeddable,
            count(*) filter (where not p.is_embedded and not p.is_poor) as stale
        from per_item as p
        group by p.tenant_id
    )
    select c.tenant_id, c.items, c.embedded, c.not_embeddable, c.stale, coalesce(q.queued, 0),
        coalesce(l.listed, 0),
        -- every embeddable item embedded from its current text, nothing queued, and every
        -- embedded item with its semantic list wherever the default model keeps lists
        c.stale = 0 and coalesce(q.queued, 0) = 0
            and (coalesce(l.listed, 0) >= c.embedded or c.embedded < 2
                 or not exists (select from default_listed as d where d.tenant_id = c.tenant_id))
    from counted as c
    left join queued as q on q.tenant_id = c.tenant_id
    left join listed as l on l.tenant_id = c.tenant_id
    order by c.tenant_id
$$;
comment on function pgrecs.model_completeness(smallint) is
    'Per tenant: active items, those embedded by the model from their current text, not embeddable, stale (to '
    'embed), queued, with a semantic neighbour list, and whether the model is complete (nothing stale or queued, '
    'every embedded item listed). `pgrecs models list` shows it; promotion requires it for every tenant.';

create or replace function pgrecs.swap_semantic_lists(old_default smallint, new_default smallint)
returns bigint
language plpgsql
volatile
set pgrecs.tenant = ''
as $$
declare
    moved bigint;
begin
    -- the serving lists (item_neighbors, signal semantic) become the old default's own rows
    insert into pgrecs.semantic_neighbors (tenant_id, model_id, item_id, neighbor_item_id, score, rank, computed_at)
    select nb.tenant_id, old_default, nb.item_id, nb.neighbor_item_id, nb.score, nb.rank, nb.computed_at
    from pgrecs.item_neighbors as nb
    where nb.signal = 'semantic'
    on conflict (tenant_id, model_id, item_id, neighbor_item_id)
        do update set score = excluded.score, rank = excluded.rank, computed_at = excluded.computed_at;
    delete from pgrecs.item_neighbors as nb where nb.signal = 'semantic';
    -- and the new default's rows become the serving lists
    insert into pgrecs.item_neighbors (tenant_id, signal, item_id, neighbor_item_id, score, rank, computed_at)
    select sn.tenant_id, 'semantic', sn.item_id, sn.neighbor_item_id, sn.score, sn.rank, sn.computed_at
    from pgrecs.semantic_neighbors as sn
    where sn.model_id = new_default;
    get diagnostics moved = row_count;
    delete from pgrecs.semantic_neighbors as sn where sn.model_id = new_default;
    return moved;
end
$$;
comment on function pgrecs.swap_semantic_lists(smallint, smallint) is
    'Internal to promote/rollback: the serving semantic lists (pgrecs.item_neighbors) move to '
    'pgrecs.semantic_neighbors under the old default, the new default''s move in; returns the rows moved in.';

create or replace function pgrecs.cut_over(
    new_default smallint,
    old_state text,
    action text,
    forced boolean,
    gate jsonb
)
returns table (previous_model text, new_model text, lists_moved bigint)
language plpgsql
volatile
set pgrecs.tenant = ''
as $$
declare
    prior pgrecs.embedding_models;
    incoming pgrecs.embedding_models;
    incomplete record;
    entry jsonb;
    moved bigint;
begin
    -- list writers hold this lock shared: they finish first, and write where the lists live after
    perform pg_advisory_xact_lock(hashtext('pgrecs.model_cutover'));
    select * into prior from pgrecs.embedding_models as m where m.is_default for update;
    select * into incoming from pgrecs.embedding_models as m where m.model_id = new_default for update;
    if prior.model_id is null then
        raise exception 'no default embedding model is registered' using errcode = 'P0002';
    end if;
    select c.tenant_id, c.stale, c.queued, c.embedded - c.listed as unlisted into incomplete
    from pgrecs.model_completeness(incoming.model_id) as c
    where not c.complete
    limit 1;
    if found then
        raise exception 'model % is not completely embedded for tenant %: % stale, % queued, % without a semantic list (run pgrecs embed)',
            incoming.name, incomplete.tenant_id, incomplete.stale, incomplete.queued, greatest(incomplete.unlisted, 0)
            using errcode = '55000';
    end if;
    moved := pgrecs.swap_semantic_lists(prior.model_id, incoming.model_id);
    entry := jsonb_build_object('action', action, 'at', now(), 'replaced', prior.name, 'forced', forced, 'gate', gate);
    if old_state = 'standby' then
        -- one standby at most: the one before is replaced
        update pgrecs.embedding_models set state = 'retired' where state = 'standby';
    end if;
    update pgrecs.embedding_models as m
    set is_default = false, state = old_state,
        lineage = coalesce(m.lineage, '{}') || jsonb_build_object('promotions',
            coalesce(m.lineage -> 'promotions', '[]') || jsonb_build_object(
                'action', case when old_state = 'retired' then 'rolled back' else 'replaced' end,
                'at', now(), 'by', incoming.name))
    where m.model_id = prior.model_id;
    update pgrecs.embedding_models as m
    set is_default = true, state = 'active',
        lineage = coalesce(m.lineage, '{}') || jsonb_build_object('promotions',
            coalesce(m.lineage -> 'promotions', '[]') || entry)
    where m.model_id = incoming.model_id;
    -- retired models' lists are not maintained any more (their embeddings stay until dropped)
    delete from pgrecs.semantic_neighbors as sn
    using pgrecs.embedding_models as m
    where m.model_id = sn.model_id and m.state = 'retired';
    return query select prior.name, incoming.name, moved;
end
$$;
comment on function pgrecs.cut_over(smallint, text, text, boolean, jsonb) is
    'Internal to promote_model/rollback_model: in the caller''s transaction, make a complete model the default '
    '(swapping the semantic lists) and the old default `old_state`, recording the change in both lineages.';

create or replace function pgrecs.promote_model(model text, forced boolean default false)
returns table (previous_model text, new_model text, lists_moved bigint)
language plpgsql
volatile
as $$
declare
    m pgrecs.embedding_models;
    active_id smallint;
    gate jsonb;
begin
    select * into m from pgrecs.embedding_models as e where e.name = model;
    if not found then
        raise exception 'unknown embedding model: %', model using errcode = 'P0002';
    end if;
    if m.state <> 'candidate' then
        raise exception 'model % is %, not a candidate: only a candidate can be promoted', model, m.state
            using errcode = '22023';
    end if;
    active_id := (pgrecs.resolve_model(null)).model_id;
    gate := m.evaluation -> 'gate';
    if not forced then
        if gate is null or (m.evaluation -> 'active' ->> 'model_id')::smallint is distinct from active_id then
            raise exception 'model % has no evaluation against the active model: run pgrecs models evaluate % (or promote --force)',
                model, model using errcode = '55000';
        end if;
        if not (gate ->> 'passed')::boolean then
            raise exception 'model % did not pass the evaluation gate: % (promote --force to override)',
                model, gate ->> 'reason' using errcode = '55000';
        end if;
    end if;
    return query select * from pgrecs.cut_over(m.model_id, 'standby', 'promoted', forced, gate);
end
$$;
comment on function pgrecs.promote_model(text, boolean) is
    'Make a complete candidate the default model in one transaction, when its evaluation against the active '
    'model passed the gate (or forced: recorded in its lineage); the replaced model goes on standby. '
    'Example: select * from pgrecs.promote_model(model => ''minilm-shop-v2'').';

create or replace function pgrecs.rollback_model()
returns table (previous_model text, new_model text, lists_moved bigint)
language plpgsql
volatile
as $$
declare
    standby smallint;
begin
    select e.model_id into standby from pgrecs.embedding_models as e where e.state = 'standby';
    if not found then
        raise exception 'no model is on standby: nothing to roll back to' using errcode = 'P0002';
    end if;
    return query select * from pgrecs.cut_over(standby, 'retired', 'restored', false, null);
end
$$;
comment on function pgrecs.rollback_model() is
    'Return to the model the last promotion replaced (on standby), in one transaction; the rolled-back model is '
    'retired (its embeddings stay until pgrecs.drop_model).';

create or replace function pgrecs.drop_model(model text)
returns bigint
language plpgsql
volatile
set pgrecs.tenant = ''
as $$
declare
    m pgrecs.embedding_models;
    ix record;
    removed bigint;
begin
    perform pg_advisory_xact_lock(hashtext('pgrecs.model_cutover'));
    select * into m from pgrecs.embedding_models as e where e.name = model for update;
    if not found then
        raise exception 'unknown embedding model: %', model using errcode = 'P0002';
    end if;
    if m.is_default then
        raise exception 'model % is the active model: promote another one (or roll back) before dropping it', model
            using errcode = '55000';
    end if;
    select count(*) into removed from pgrecs.item_embeddings as e where e.model_id = m.model_id;
    -- its HNSW index and the partial indexes of hot categories (pgrecs.ensure_filter_index)
    for ix in
        select c.relname
        from pg_catalog.pg_class as c
        join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = 'pgrecs' and c.relkind = 'i'
            and (c.relname = 'item_embeddings_hnsw_m' || m.model_id
                 or c.relname like 'item_embeddings_hnsw_m' || m.model_id || '\_%')
    loop
        execute format('drop index pgrecs.%I', ix.relname);
    end loop;
    -- embeddings, queue rows, verdicts and lists go with the row (on delete cascade)
    delete from pgrecs.embedding_models as e where e.model_id = m.model_id;
    perform pgrecs.generate_semantic_search();
    return removed;
end
$$;
comment on function pgrecs.drop_model(text) is
    'Remove a model that is not the default: its embeddings, indexes, queue rows, verdicts and semantic lists; '
    'returns how many embeddings went. Refused for the active model.';
