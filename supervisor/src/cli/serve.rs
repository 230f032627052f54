//! `flw serve`: the scripts' tools and flows over HTTP (MCP Streamable
//! HTTP, a JSON API, metrics) until SIGTERM or SIGINT, then a drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{OnDisconnect, ServeConfig};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::serve::Server;

/// The environment variable that holds the bearer token.
pub const TOKEN_ENV: &str = "FLW_TOKEN";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pools: super::ServedPools,
    /// Address to listen on: HOST:PORT, or PORT for 127.0.0.1 [default: 127.0.0.1:8077].
    /// Any address but loopback needs a bearer token (--token-file or FLW_TOKEN).
    #[arg(long, value_name = "ADDR", value_parser = crate::config::parse_listen)]
    listen: Option<std::net::SocketAddr>,
    /// A file whose content is the bearer token clients must send
    /// (Authorization: Bearer TOKEN). The variable FLW_TOKEN works too.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// A browser origin to let in besides loopback ones, e.g. https://app.example.com (repeatable).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// A Host name to let in (repeatable); loopback names are let in on loopback.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Requests one client address may have in flight [default: 1024].
    #[arg(long, value_name = "N")]
    client_limit: Option<std::num::NonZeroUsize>,
    /// How long calls in flight may run on after SIGTERM or SIGINT [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    drain: Option<Duration>,
    /// What a run started with 202 does when its client disconnects [default: continue].
    #[arg(long, value_name = "WHAT")]
    on_disconnect: Option<OnDisconnect>,
    /// Reload workers when their files change (pools can also say `watch = true`).
    #[arg(long)]
    watch: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init("info,rmcp=warn");
    crate::fault::announce();
    let config = args.pools.load()?;
    let serve = serve_config(&args, config.serve.clone());
    let token = token(&serve)?;
    if !serve.listen.ip().is_loopback() && token.is_none() {
        anyhow::bail!(
            "refusing to listen on {} without a bearer token: anyone who can reach it could run your tools. \
Put a token in a file and pass --token-file FILE (or set {TOKEN_ENV}), or listen on 127.0.0.1",
            serve.listen
        );
    }
    let scripts = config.pools.iter().map(|p| p.script.clone()).collect();
    let config_file = args.pools.config_file();
    let router = Router::start(config).with_metrics(Arc::new(Metrics::new()));
    let server = match Server::bind(router.clone(), serve.clone(), token).await {
        Ok(s) => s,
        Err(e) => {
            router.shutdown(Duration::ZERO).await;
            return Err(e);
        }
    };
    let addr = server.local_addr()?;
    let url = format!("http://{addr}");
    eprintln!("flw serve: listening on {url} (MCP at {url}/mcp, JSON API at {url}/v1, metrics at {url}/metrics)");
    let mut reloaders = super::Reloaders::on_sighup(&router);
    let _registered = crate::instances::register("serve", scripts, config_file, Some(url));
    reloaders.watch(args.watch);
    let drain = serve.drain;
    server
        .run(async move {
            let code = super::interrupted().await;
            reloaders.stop();
            let signal = if code == super::EXIT_INTERRUPTED {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            eprintln!(
                "flw serve: {signal}: draining (up to {drain:?}); send it again to stop at once"
            );
            tokio::spawn(async {
                let code = super::interrupted().await;
                eprintln!("flw serve: stopping at once");
                std::process::exit(i32::from(code));
            });
        })
        .await;
    eprintln!("flw serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The `[serve]` table with the flags applied over it.
fn serve_config(args: &Args, mut c: ServeConfig) -> ServeConfig {
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if let Some(f) = &args.token_file {
        c.token_file = Some(f.clone());
    }
    c.allowed_origins.extend(args.allow_origins.iter().cloned());
    c.allowed_hosts.extend(args.allow_hosts.iter().cloned());
    if let Some(n) = args.client_limit {
        c.client_limit = n.get();
    }
    if let Some(d) = args.drain {
        c.drain = d;
    }
    if let Some(o) = args.on_disconnect {
        c.on_disconnect = o;
    }
    c
}

/// The bearer token from `file`, else from `FLW_TOKEN`, trimmed, with
/// where it came from (for errors); `None` when neither is given.
pub(super) fn read_token(
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<(String, String)>> {
    let (text, source) = match file {
        Some(f) => (
            std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("cannot read the token file {}: {e}", f.display()))?,
            format!("the token file {}", f.display()),
        ),
        None => match std::env::var(TOKEN_ENV) {
            Ok(t) => (t, format!("${TOKEN_ENV}")),
            Err(_) => return Ok(None),
        },
    };
    Ok(Some((text.trim().to_string(), source)))
}

/// The bearer token from the token file, else from `FLW_TOKEN`, checked.
fn token(c: &ServeConfig) -> anyhow::Result<Option<String>> {
    let Some((token, source)) = read_token(c.token_file.as_deref())? else {
        return Ok(None);
    };
    if token.is_empty() {
        anyhow::bail!("{source} is empty: put the bearer token in it");
    }
    if token.len() < 16 {
        anyhow::bail!(
            "the token in {source} is {} long: use at least 16 (e.g. openssl rand -hex 32)",
            crate::plural::count(token.chars().count() as u64, "character", "characters")
        );
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!(
            "the token in {source} holds whitespace: use one line of printable characters"
        );
    }
    Ok(Some(token))
}
