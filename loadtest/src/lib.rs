//! Load generator for Marquee hubs, run side by side with a Socket.IO 4 peer.
//!
//! # Layout
//!
//! - [`scenarios`]: `connections` (idle subscribed sockets and memory per connection),
//!   `fanout` (one channel, many subscribers: throughput, latency, loss) and `resume` (a node
//!   killed under load: time to resume, loss and duplicates).
//! - [`servers`]: starts Marquee nodes or Socket.IO peer nodes as child processes on loopback
//!   ports, and reads their memory.
//! - [`floor`]: the fan-out floor, a bare program writing pre-framed messages to sockets, the
//!   least any server could do for the `fanout` workload.
//! - [`worker`]: client worker processes, each holding up to ~18,000 sockets (the open-file
//!   limit is per process), reporting counters and latency histograms as JSON lines.
//! - [`wire`]: one client connection for each target (Marquee JSON over raw tokio-tungstenite;
//!   Engine.IO v4 over the raw WebSocket transport) and the HTTP publisher.
//! - [`onsale`]: the whole onsale against a cluster it starts, with faults, checking every
//!   invariant from Postgres and from what the buyers saw.
//! - [`report`]: the JSON schema, the human summary and the HTML report with plots.
//! - [`baseline`]: the figures of a new `BENCHMARKS.md` more than 10 % worse than the
//!   committed one's.
//!
//! Every run talks to loopback addresses only, opens a bounded number of connections, and ends
//! by itself after its configured durations.

pub mod baseline;
pub mod floor;
pub mod onsale;
pub mod report;
pub mod scenarios;
pub mod servers;
pub mod wire;
pub mod worker;
