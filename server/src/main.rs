//! The `marquee` binary: a thin clap front over the `marquee_server` library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use marquee_server::Config;
use marquee_server::auth::{Claims, sign_hs256};
use marquee_server::clock::now_secs;
use marquee_server::node::demo;

/// Marquee: realtime, WebSocket-first ticketing.
#[derive(Debug, Parser)]
#[command(name = "marquee", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a hub node.
    Serve(Box<Config>),
    /// Run a booking worker process: it takes purchase commands from Redis and commits them to
    /// Postgres, alongside any number of hub nodes.
    Worker(Box<marquee_server::config::WorkerConfig>),
    /// Run a single-node demo on the memory engine, printing ready-made tokens.
    Demo(demo::DemoArgs),
    /// Mint an HS256 access token (for operators, scripts and tests).
    Token(TokenArgs),
    /// Check a published pre-queue order: the seed matches its commitment and the order is the
    /// seed's (see docs/waiting-room.md). Exits non-zero if it does not check out.
    VerifyShuffle {
        /// A JSON file `{"onsale", "seed_sha256", "seed", "order": [...]}`; `-` reads stdin.
        file: String,
    },
    /// Print the OpenAPI document of the public listener's routes (or, with `--internal`, of
    /// the internal listener's) and exit: what `GET /openapi.json` serves, for client
    /// generators and reviews without a running node.
    Openapi {
        /// The internal listener's document (payment hooks, publishing).
        #[arg(long)]
        internal: bool,
    },
    /// Apply the database migrations and exit.
    Migrate {
        /// Postgres URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    sub: String,
    /// Roles, comma-separated (e.g. `admin,gate`).
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Tenant claim.
    #[arg(long)]
    tenant: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Issuer claim.
    #[arg(long)]
    iss: Option<String>,
    /// Audience claim.
    #[arg(long)]
    aud: Option<String>,
    /// Sign-in session claim (`sid`): tokens naming it are refused once it is ended.
    #[arg(long)]
    sid: Option<String>,
    /// The HS256 secret.
    #[arg(long, env = "MARQUEE_JWT_SECRET", hide_env_values = true)]
    secret: String,
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(config) => {
            init_tracing();
            let listener = marquee_server::http::serve::bind(config.listen)
                .with_context(|| format!("binding {}", config.listen))?;
            // The internal listener serves operators' publishing and, with a database, the
            // payment hooks: every node binds it.
            let addr = config.internal_listen;
            let internal = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("binding the internal listener {addr} (--internal-listen)")
            })?;
            let node = marquee_server::Node::build(*config)
                .await?
                .with_internal_listener(internal);
            node.serve(listener, marquee_server::shutdown_signal())
                .await
        }
        Command::Worker(config) => {
            init_tracing();
            marquee_server::run_worker(*config, marquee_server::shutdown_signal()).await
        }
        Command::Demo(args) => {
            init_tracing();
            demo::run(args).await
        }
        Command::Migrate { database_url } => {
            init_tracing();
            let pool = marquee_server::db::connect(&database_url, 1, "migrate").await?;
            marquee_server::db::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Openapi { internal } => {
            let doc = if internal {
                marquee_server::http::openapi::internal()
            } else {
                marquee_server::http::openapi::public()
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        Command::VerifyShuffle { file } => {
            use marquee_server::waiting_room::shuffle::{PublishedOrder, verify};
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)?
            };
            let published: PublishedOrder = serde_json::from_str(&text)?;
            if let Err(e) = verify(&published) {
                eprintln!("the published order does not check out: {e}");
                std::process::exit(1);
            }
            println!(
                "ok: {} entrants of onsale {} are in the order the revealed seed gives, and the seed matches its commitment",
                published.order.len(),
                published.onsale
            );
            Ok(())
        }
        Command::Token(args) => {
            let claims = Claims {
                sub: args.sub,
                tenant: args.tenant,
                roles: args.roles,
                exp: now_secs() + args.ttl,
                nbf: None,
                iss: args.iss,
                aud: args.aud.map(marquee_server::auth::Audience::One),
                sid: args.sid,
            };
            println!("{}", sign_hs256(&args.secret, &claims));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
