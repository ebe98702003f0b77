-- The waiting room's fairness record. The seed is drawn when the pre-queue opens (its SHA-256
-- is published then) and revealed at the start, with the order it gave the pre-queue's places,
-- so anyone can recompute the order long after the live channel's history is gone.
alter table onsale
    add column shuffle_seed  bytea,
    add column shuffle_order text[],
    add constraint onsale_shuffle_seed_is_32_bytes check (shuffle_seed is null or length(shuffle_seed) = 32),
    add constraint onsale_shuffle_order_needs_seed check (shuffle_order is null or shuffle_seed is not null);
