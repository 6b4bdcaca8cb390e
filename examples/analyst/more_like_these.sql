-- More like these, less like those (internal item ids looked up from external ids).
select r.rank, r.external_id, round(r.score::numeric, 4) as score, array_to_string(r.reasons, '; ') as reasons
from recs.recommend(
    examples_positive => array(select item_id from pgrecs.items where external_id = any(string_to_array(:'likes', ','))),
    examples_negative => array(select item_id from pgrecs.items where external_id = any(string_to_array(:'dislikes', ','))),
    k => 10
) r
order by r.rank;
