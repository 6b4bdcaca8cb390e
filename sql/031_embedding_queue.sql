-- The embedding queue: triggers on pgrecs.items queue new and changed items (and their neighbour
-- lists) for the embed workers, copy the filter columns onto pgrecs.item_embeddings and keep the
-- copies in step; enqueue_stale_embeddings queues what a model is missing.

create or replace function pgrecs.items_queue_inserted()
returns trigger
language plpgsql
volatile
as $$
begin
    insert into pgrecs.embedding_queue (tenant_id, item_id, model_id)
    select n.tenant_id, n.item_id, m.model_id
    from new_rows as n
    cross join pgrecs.embedding_models as m
    where n.active and m.state <> 'retired'
    on conflict on constraint embedding_queue_pkey do nothing;
    if found then
        perform pg_notify('pgrecs_embed', '');
    end if;
    return null;
end
$$;
comment on function pgrecs.items_queue_inserted() is
    'Trigger: queue new active items for every maintained (not retired) model and notify the embed watcher.';

create or replace function pgrecs.items_queue_updated()
returns trigger
language plpgsql
volatile
as $$
begin
    insert into pgrecs.embedding_queue (tenant_id, item_id, model_id)
    select n.tenant_id, n.item_id, m.model_id
    from new_rows as n
    join old_rows as o on o.item_id = n.item_id
    cross join pgrecs.embedding_models as m
    where m.state <> 'retired'
      and (n.active is distinct from o.active
        or n.embed_override is distinct from o.embed_override
        or (
            (n.title, n.description, n.brand, n.category_path, n.attributes)
                is distinct from (o.title, o.description, o.brand, o.category_path, o.attributes)
            and pgrecs.compose_item_text(n.title, n.description, n.brand, n.category_path, n.attributes)
                is distinct from pgrecs.compose_item_text(o.title, o.description, o.brand, o.category_path, o.attributes)
        ))
    on conflict on constraint embedding_queue_pkey do nothing;
    if found then
        perform pg_notify('pgrecs_embed', '');
    end if;
    return null;
end
$$;
comment on function pgrecs.items_queue_updated() is
    'Trigger: queue updated items whose composed embedding text, active flag or embedding override changed '
    '(every maintained model), and notify the embed watcher.';

create or replace function pgrecs.items_queue_neighbor_refill()
returns trigger
language plpgsql
volatile
as $$
begin
    -- The FK cascade removes the deleted item from every neighbour list; queue the items that
    -- listed it (for the model of that list) so the worker refills their lists to N.
    insert into pgrecs.embedding_queue (tenant_id, item_id, model_id)
    select n.tenant_id, n.item_id, n.model_id
    from pgrecs.semantic_lists as n
    join pgrecs.embedding_models as m on m.model_id = n.model_id
    where n.neighbor_item_id = old.item_id
        and n.item_id <> old.item_id
        and m.state <> 'retired'
    on conflict on constraint embedding_queue_pkey do nothing;
    return old;
end
$$;
comment on function pgrecs.items_queue_neighbor_refill() is
    'Trigger: before an item is deleted, queue the items whose semantic neighbour list (any maintained model) contains it.';

create or replace trigger items_queue_embeddings_insert
    after insert on pgrecs.items
    referencing new table as new_rows
    for each statement execute function pgrecs.items_queue_inserted();

create or replace trigger items_queue_embeddings_update
    after update on pgrecs.items
    referencing old table as old_rows new table as new_rows
    for each statement execute function pgrecs.items_queue_updated();

create or replace trigger items_queue_neighbor_refill
    before delete on pgrecs.items
    for each row execute function pgrecs.items_queue_neighbor_refill();

-- The similarity filter columns of pgrecs.item_embeddings (active, category_path, price, in_stock;
-- migration 0007) copy pgrecs.items: filled when an embedding row is written, kept in step when
-- an item changes. Filters then read the embedding row alone (no join on the hot path).
create or replace function pgrecs.item_embeddings_copy_filters()
returns trigger
language plpgsql
volatile
as $$
begin
    select i.active, i.category_path, i.price, coalesce(i.stock, 1) > 0, i.tie_key
    into new.active, new.category_path, new.price, new.in_stock, new.tie_key
    from pgrecs.items as i
    where i.item_id = new.item_id;
    return new;
end
$$;
comment on function pgrecs.item_embeddings_copy_filters() is
    'Trigger: copy the item''s filter columns (active, category_path, price, in_stock) and tie key onto a new '
    'embedding row.';

create or replace trigger item_embeddings_copy_filters
    before insert on pgrecs.item_embeddings
    for each row execute function pgrecs.item_embeddings_copy_filters();

create or replace function pgrecs.items_sync_embedding_filters()
returns trigger
language plpgsql
volatile
as $$
begin
    update pgrecs.item_embeddings as e
    set active = n.active, category_path = n.category_path, price = n.price, in_stock = coalesce(n.stock, 1) > 0,
        tie_key = n.tie_key
    from new_rows as n
    where e.item_id = n.item_id
        and (e.active, e.category_path, e.price, e.in_stock, e.tie_key)
            is distinct from (n.active, n.category_path, n.price, coalesce(n.stock, 1) > 0, n.tie_key);
    return null;
end
$$;
comment on function pgrecs.items_sync_embedding_filters() is
    'Trigger: after items change, update the filter columns and tie key copied onto their embeddings (only rows '
    'that differ).';

create or replace trigger items_sync_embedding_filters
    after update on pgrecs.items
    referencing new table as new_rows
    for each statement execute function pgrecs.items_sync_embedding_filters();

create or replace function pgrecs.enqueue_stale_embeddings(model_id smallint)
returns integer
language plpgsql
volatile
as $$
declare
    queued integer;
    tenant text := pgrecs.current_tenant();
begin
    -- active items of this tenant whose current composed text has neither an embedding nor a
    -- not-embeddable verdict with the same hash
    insert into pgrecs.embedding_queue (tenant_id, item_id, model_id)
    select i.tenant_id, i.item_id, enqueue_stale_embeddings.model_id
    from pgrecs.items as i
    cross join lateral (
        select pgrecs.item_text_sha256(
            pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes)) as sha
    ) as t
    where i.tenant_id = tenant
        and i.active
        and not exists (
            select from pgrecs.item_embeddings as e
            where e.item_id = i.item_id and e.model_id = enqueue_stale_embeddings.model_id and e.text_sha256 = t.sha)
        and not exists (
            select from pgrecs.not_embeddable as x
            where x.item_id = i.item_id and x.model_id = enqueue_stale_embeddings.model_id and x.text_sha256 = t.sha)
    on conflict on constraint embedding_queue_pkey do nothing;
    get diagnostics queued = row_count;
    return queued;
end
$$;
comment on function pgrecs.enqueue_stale_embeddings(smallint) is
    'Queue every active item of the current tenant without an up-to-date embedding (or verdict) for the model; returns how many.';
