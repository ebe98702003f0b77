-- Every admission the waiting room makes, in the order it made them: the buyer, the place and
-- its sequence in the line. Written by the admission controller after each batch it admits
-- (the line in Redis is what admits; this is the durable record of it), for operators (who was
-- let in, and when) and for checking that admission order is queue order: sequences rise in
-- the order of `admission_id`, and the pre-queue's sequences follow its published draw.
create table admission (
    admission_id  bigint generated always as identity primary key,
    tenant_id     uuid not null references tenant (tenant_id),
    onsale_id     uuid not null references onsale (onsale_id),
    user_id       text not null,
    place_id      text not null,
    seq           bigint not null,
    admitted_at   timestamptz not null default now()
);
create index admission_onsale_idx on admission (onsale_id, admission_id);
