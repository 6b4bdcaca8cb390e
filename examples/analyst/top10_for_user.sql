-- Top 10 for one user (by external id), from the live event history, with the reasons.
select rank, external_id, round(score::numeric, 4) as score, array_to_string(reasons, '; ') as reasons
from recs.recommend_for_user(user_id => :'user', k => 10, placement => 'home_for_you')
order by rank;
