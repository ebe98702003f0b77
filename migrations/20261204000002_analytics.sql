-- Sales analytics (server/src/analytics): what each query reads, and an index for each.

-- Every new place the waiting room handed out, written by the node that took the join, in
-- batches (server/src/waiting_room/joins.rs): the funnel's first step, and with `admission`
-- (joined on the place) the time each admitted buyer spent in the queue.
create table queue_join (
    onsale_id  uuid not null,
    tenant_id  uuid not null,
    user_id    text not null,
    place_id   text not null,
    joined_at  timestamptz not null,
    primary key (onsale_id, place_id)
);

-- Time in queue: an onsale's admissions looked up by place.
create index admission_place_idx on admission (onsale_id, place_id) include (admitted_at, user_id);

-- The funnel's held step: an onsale's holds by buyer.
create index hold_onsale_user_idx on hold (onsale_id, user_id);

-- The timeline and the funnel's paid step: an event's paid orders in the order they were paid
-- (refunded orders keep their `paid_at`), with what the queries read from them.
create index ticket_order_paid_idx on ticket_order (event_id, paid_at)
    include (status, currency, hold_id, user_id, updated_at)
    where paid_at is not null;

-- The timeline's lines: an order's items with what is summed, read by order without the heap.
create index ticket_order_item_event_order_idx on ticket_order_item (event_id, ticket_order_id)
    include (ticket_type_id, seat_id, quantity, unit_minor);
