//! The Redis client that request/reply work shares (the command queue, the waiting room's
//! line), and the lease script both use to make one holder own a key at a time.
//!
//! The channel engine builds its own clients: it needs a subscriber connection as well.

use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
use std::time::Duration;

/// A connected Redis client for request/reply work: it reconnects with backoff, gives up on a
/// connection attempt after 5 s, and on a command after 5 s (a Redis that stopped answering,
/// paused or partitioned away, fails the calls waiting on it instead of hanging them: a worker
/// then leaves its batch unacknowledged for whoever owns the event next).
pub async fn client(url: &str) -> Result<fred::clients::Client, fred::error::Error> {
    let config = Config::from_url(url)?;
    let client = Builder::from_config(config)
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
        })
        .with_performance_config(|c| {
            c.default_command_timeout = Duration::from_secs(5);
        })
        .build()?;
    client.init().await?;
    Ok(client)
}

/// Takes or renews a lease. `KEYS[1]`: the lease key; `ARGV[1]`: the holder; `ARGV[2]`: the
/// lease's lifetime in milliseconds. Returns 1 if `ARGV[1]` holds the lease now, 0 if another
/// holder does.
pub(crate) const LEASE_LUA: &str = r"
local lease, holder, ttl_ms = KEYS[1], ARGV[1], ARGV[2]
local owner = redis.call('GET', lease)
if owner == false then
  redis.call('SET', lease, holder, 'PX', ttl_ms)
  return 1
end
if owner == holder then
  redis.call('PEXPIRE', lease, ttl_ms)
  return 1
end
return 0
";

/// Gives a lease up if its holder still holds it. `KEYS[1]`: the lease key; `ARGV[1]`: the
/// holder.
pub(crate) const UNLEASE_LUA: &str = r"
local lease, holder = KEYS[1], ARGV[1]
if redis.call('GET', lease) == holder then return redis.call('DEL', lease) end
return 0
";
