-- The nodes that record connections, one row per start of a node process (`boot`), refreshed
-- every few seconds. A row whose `seen_at` is old is a node that died: its connections that
-- never recorded an end are closed as `node_lost` by whichever node sweeps next.
create table hub_node (
    boot      uuid primary key,
    node      text not null,
    started_at timestamptz not null default now(),
    seen_at   timestamptz not null default now()
);

-- Every WebSocket connection a node opened: who (tenant, user, the token's sign-in session
-- `sid`), where (node, client address, user agent), when it started and ended and why. Written
-- by each node in batches, off the connections' path (server/src/sessions/mod.rs). Pruned
-- after the retention period (MARQUEE_SESSION_RETENTION).
create table connection_session (
    connection_id uuid primary key,
    tenant        text not null default '',
    user_id       text not null,
    sid           text,
    node          text not null,
    boot          uuid not null,
    address       inet,
    user_agent    text,
    started_at    timestamptz not null,
    ended_at      timestamptz,
    close_reason  text
);
-- A buyer's list, newest first.
create index connection_session_user_idx on connection_session (tenant, user_id, started_at desc);
-- Ending a session: its live connections.
create index connection_session_sid_idx on connection_session (tenant, sid) where sid is not null;
-- The open connections of a node that died.
create index connection_session_open_idx on connection_session (boot) where ended_at is null;
-- Pruning, oldest first.
create index connection_session_started_idx on connection_session (started_at);

-- Sign-in sessions ended by their user or an operator: tokens whose (tenant, sid) is here are
-- refused by every node, which loads this table at start and hears of new rows through
-- `notify marquee_session_ended`.
create table ended_session (
    tenant     text not null default '',
    sid        text not null,
    user_id    text not null,
    ended_by   text not null,
    ended_at   timestamptz not null default now(),
    primary key (tenant, sid)
);
create index ended_session_ended_idx on ended_session (ended_at);
