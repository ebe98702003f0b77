//! Watches channels and prints every event.
//!
//! ```text
//! MARQUEE_TOKEN=<jwt> cargo run -p marquee-client --example watch -- ws://127.0.0.1:8080/ws seats:<event id>
//! ```
//!
//! Kill and restart the server while it runs: the client reconnects with backoff and resumes
//! each channel from the last message it printed.

use marquee_client::{Client, ClientConfig, Event, TokenProvider};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws".to_owned());
    let channels: Vec<String> = args.collect();
    let token = std::env::var("MARQUEE_TOKEN")
        .map_err(|_| anyhow::anyhow!("set MARQUEE_TOKEN (marquee demo prints one)"))?;

    let (client, mut events) =
        Client::connect(ClientConfig::new(url), TokenProvider::fixed(token)).await?;
    for channel in &channels {
        let subscribed = client.subscribe(channel).await?;
        println!(
            "subscribed {} at {}:{}",
            channel, subscribed.position.epoch, subscribed.position.offset
        );
    }
    while let Some(event) = events.next().await {
        match event {
            Event::Publication(p) => println!("{} #{} {}", p.channel, p.offset, p.data),
            other => println!("{other:?}"),
        }
    }
    Ok(())
}
