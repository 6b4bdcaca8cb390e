-- Embedding decisions: the junk-text rule (pgrecs.item_text_problem) decides which items are
-- embedded unless the merchant overrules it per item (pgrecs.items.embed_override). Setting the
-- override queues the item (trigger items_queue_embeddings_update), so the next `pgrecs embed` or
-- the watcher applies it.

create or replace function pgrecs.embed_decision(item text)
returns table (external_id text, title text, embed_override boolean, rule_problem text, decision text,
               problem text)
language sql
stable parallel safe
as $$
    select i.external_id, i.title, i.embed_override, pgrecs.item_text_problem(x.composed),
           case when i.embed_override then 'embedded: allowed by the merchant'
                when not i.embed_override then 'not embedded: refused by the merchant'
                when pgrecs.item_text_problem(x.composed) is null then 'embedded: the rule finds the text fine'
                else 'not embedded: ' || pgrecs.item_text_problem(x.composed)
           end,
           pgrecs.item_embed_problem(x.composed, i.embed_override)
    from pgrecs.items i
    cross join lateral (
        select pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes) as composed
    ) x
    where i.tenant_id = pgrecs.current_tenant()
      and i.external_id = embed_decision.item
$$;
comment on function pgrecs.embed_decision(text) is
    'The body of recs.embed_decision (the public function, documented there).';

create or replace function pgrecs.set_embed_override(item text, embed boolean)
returns table (external_id text, title text, embed_override boolean, rule_problem text, decision text,
               problem text)
language plpgsql
volatile
as $$
begin
    update pgrecs.items as i
    set embed_override = set_embed_override.embed
    where i.tenant_id = pgrecs.current_tenant()
      and i.external_id = set_embed_override.item
      and i.embed_override is distinct from set_embed_override.embed;
    if not exists (select from pgrecs.items i
                   where i.tenant_id = pgrecs.current_tenant() and i.external_id = set_embed_override.item) then
        raise exception 'unknown item: %', set_embed_override.item using errcode = 'P0002';
    end if;
    return query select * from recs.embed_decision(set_embed_override.item);
end
$$;
comment on function pgrecs.set_embed_override(text, boolean) is
    'The body of recs.set_embed_override (the public function, documented there).';

create or replace function pgrecs.embed_overrides(n integer default 50)
returns table (external_id text, title text, embed_override boolean, rule_problem text)
language sql
stable parallel safe
as $$
    select i.external_id, i.title, i.embed_override,
           pgrecs.item_text_problem(
               pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes))
    from pgrecs.items i
    where i.tenant_id = pgrecs.current_tenant()
      and i.embed_override is not null
    order by i.external_id
    limit embed_overrides.n
$$;
comment on function pgrecs.embed_overrides(integer) is
    'The body of recs.embed_overrides (the public function, documented there).';
