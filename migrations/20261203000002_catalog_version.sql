-- What an event sells can change during its onsale (a ticket type, a price category or its
-- seat map added): the catalog admin API bumps this in the same transaction, and the event's
-- owner, which looks at it every second, loads the event again when it moved.
alter table event add column catalog_version bigint not null default 0;
