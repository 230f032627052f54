//! `flw ps` and `flw cancel`: talk to running `flw serve` daemons through
//! their JSON API (found in the instance registry, or given with `--url`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::instances::{self, Instance};

/// How to reach the daemons.
#[derive(Debug, clap::Args)]
pub struct Reach {
    /// The daemon's URL, e.g. http://127.0.0.1:8077 (default: every running flw serve of this user).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// A file holding the daemon's bearer token (the variable FLW_TOKEN works too).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    #[command(flatten)]
    reach: Reach,
    /// Also list runs that have ended (daemons keep them for a while).
    #[arg(long, short)]
    all: bool,
    /// Print JSON: the servers, each with its runs.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The run's id, as `flw ps` or the JSON API shows it (r_...).
    run: String,
    #[command(flatten)]
    reach: Reach,
}

/// The bearer token sent to the daemons, and where it came from.
struct Token(Option<(String, String)>);

impl Token {
    fn value(&self) -> Option<&str> {
        self.0.as_ref().map(|(t, _)| t.as_str())
    }

    /// What a refusal (not 200, not 404) says; a 401 also says how to
    /// pass a token, or where the one sent came from.
    fn refusal(&self, status: u16, body: &Value) -> String {
        let mut text = format!("HTTP {status}: {}", error_text(body));
        if status == 401 {
            match &self.0 {
                None => text.push_str(&format!(
                    " (pass the server's token with --token-file FILE, or set {})",
                    super::serve::TOKEN_ENV
                )),
                Some((_, source)) => text.push_str(&format!(" (the token sent is from {source})")),
            }
        }
        text
    }
}

impl Reach {
    fn token(&self) -> anyhow::Result<Token> {
        Ok(Token(super::serve::read_token(self.token_file.as_deref())?))
    }

    /// The daemons to ask: `--url`, else every registered `flw serve`.
    fn servers(&self) -> Vec<(Option<Instance>, String)> {
        match &self.url {
            Some(u) => vec![(None, u.trim_end_matches('/').to_string())],
            None => instances::running()
                .into_iter()
                .filter_map(|i| i.url.clone().map(|u| (Some(i), u)))
                .collect(),
        }
    }
}

/// One request to a daemon: the status and the JSON body.
async fn request(
    method: hyper::Method,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let uri: hyper::Uri = format!("{base}{path}")
        .parse()
        .map_err(|e| anyhow::anyhow!("bad URL {base}: {e}"))?;
    // An IPv6 literal keeps its brackets in Host, not in the address.
    let host = uri.host().unwrap_or("127.0.0.1").to_string();
    let addr_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("{base}: only http:// URLs are supported (put TLS in front of flw serve)");
    }
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((addr_host.as_str(), port)).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, format!("{host}:{port}"));
        if let Some(t) = token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = sender
            .send_request(req.body(Empty::<Bytes>::new())?)
            .await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    };
    tokio::time::timeout(Duration::from_secs(90), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{base} did not answer within 90 s"))?
        .map_err(|e| anyhow::anyhow!("cannot reach {base}: {e}"))
}

fn error_text(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .map_or_else(|| body.to_string(), str::to_string)
}

/// `flw ps`.
pub async fn ps(args: PsArgs) -> anyhow::Result<ExitCode> {
    let token = args.reach.token()?;
    let mut out = Vec::new();
    let others: Vec<Instance> = if args.reach.url.is_none() {
        instances::running()
            .into_iter()
            .filter(|i| i.url.is_none())
            .collect()
    } else {
        Vec::new()
    };
    for (instance, url) in args.reach.servers() {
        let path = if args.all {
            "/v1/runs"
        } else {
            "/v1/runs?status=running"
        };
        let runs = match request(hyper::Method::GET, &url, path, token.value()).await {
            Ok((200, body)) => Ok(body["runs"].as_array().cloned().unwrap_or_default()),
            Ok((status, body)) => Err(token.refusal(status, &body)),
            Err(e) => Err(format!("{e:#}")),
        };
        let pools = match request(hyper::Method::GET, &url, "/v1/pools", token.value()).await {
            Ok((200, body)) => body["pools"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(), // an older server: no pools to show
        };
        out.push((instance, url, runs, pools));
    }
    if args.json {
        let servers: Vec<Value> = out
            .iter()
            .map(|(i, url, runs, pools)| {
                let mut v = serde_json::json!({"url": url, "pid": i.as_ref().map(|i| i.pid), "pools": pools});
                match runs {
                    Ok(r) => v["runs"] = Value::from(r.clone()),
                    Err(e) => v["error"] = Value::from(e.clone()),
                }
                v
            })
            .chain(others.iter().map(
                |i| serde_json::json!({"pid": i.pid, "command": i.command, "scripts": i.scripts}),
            ))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"servers": servers}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if out.is_empty() && others.is_empty() {
        println!("no flw server of this user is running");
        return Ok(ExitCode::SUCCESS);
    }
    for (instance, url, runs, pools) in &out {
        let pid = instance
            .as_ref()
            .map_or("?".to_string(), |i| i.pid.to_string());
        let scripts = instance.as_ref().map_or(String::new(), script_names);
        println!("flw serve  pid {pid}  {url}  {scripts}");
        print_pools(pools);
        match runs {
            Err(e) => println!("  cannot list runs: {e}"),
            Ok(r) if r.is_empty() => {
                println!("  no runs{}", if args.all { "" } else { " in flight" })
            }
            Ok(r) => {
                println!(
                    "  {:<34}  {:<4}  {:<20}  {:<9}  {:>9}  CLIENT",
                    "RUN", "KIND", "NAME", "STATUS", "ELAPSED"
                );
                for run in r {
                    println!(
                        "  {:<34}  {:<4}  {:<20}  {:<9}  {:>9}  {}",
                        run["id"].as_str().unwrap_or("?"),
                        run["kind"].as_str().unwrap_or("?"),
                        run["name"].as_str().unwrap_or("?"),
                        run["status"].as_str().unwrap_or("?"),
                        format!(
                            "{:.1}s",
                            run["elapsed_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
                        ),
                        run["client"].as_str().unwrap_or("?"),
                    );
                }
            }
        }
    }
    for i in &others {
        println!("flw {}  pid {}  {}", i.command, i.pid, script_names(i));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per pool: its workers (live, busy, idle, starting, and the
/// limits), its calls, and how its workers were started.
fn print_pools(pools: &[Value]) {
    if pools.is_empty() {
        return;
    }
    println!(
        "  {:<20}  {:<8}  {:>4}  {:>4}  {:>4}  {:>5}  {:>9}  {:>6}  {:>6}  {:>6}  {:>8}",
        "POOL",
        "MODE",
        "LIVE",
        "BUSY",
        "IDLE",
        "START",
        "MIN-MAX",
        "QUEUED",
        "FORKS",
        "SPAWNS",
        "RESTARTS"
    );
    for p in pools {
        let w = &p["workers"];
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        println!(
            "  {:<20}  {:<8}  {:>4}  {:>4}  {:>4}  {:>5}  {:>9}  {:>6}  {:>6}  {:>6}  {:>8}",
            p["name"].as_str().unwrap_or("?"),
            p["mode"].as_str().unwrap_or("?"),
            n(&w["live"]),
            n(&w["busy"]),
            n(&w["idle"]),
            n(&w["starting"]),
            format!("{}-{}", n(&w["min"]), n(&w["max"])),
            n(&p["queued"]),
            n(&p["forks"]),
            n(&p["spawns"]),
            n(&p["restarts"]),
        );
    }
}

fn script_names(i: &Instance) -> String {
    let names: Vec<String> = i
        .scripts
        .iter()
        .map(|s| {
            s.file_name().map_or_else(
                || s.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect();
    names.join(", ")
}

/// What is wrong with a run id (`r_` and hex digits), if anything.
fn run_id_problem(id: &str) -> Option<&'static str> {
    match id.strip_prefix("r_") {
        None => Some("run ids start with r_"),
        Some(hex) if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some("after r_, a run id has only hex digits (0-9, a-f)")
        }
        Some(_) => None,
    }
}

/// `flw cancel RUN`.
pub async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    if let Some(problem) = run_id_problem(&args.run) {
        eprintln!(
            "flw cancel: {:?} is not a run id: {problem}, like r_3f2a9c... (flw ps lists the runs)",
            args.run
        );
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    let token = args.reach.token()?;
    let servers = args.reach.servers();
    if servers.is_empty() {
        eprintln!(
            "flw cancel: no flw serve of this user is running (servers register in {}); name one with --url",
            instances::dir().map_or_else(|e| e.to_string(), |d| d.display().to_string())
        );
        return Ok(ExitCode::from(super::EXIT_CALL_FAILED));
    }
    let path = format!("/v1/runs/{}", args.run);
    let mut problems = Vec::new();
    for (_, url) in servers {
        match request(hyper::Method::DELETE, &url, &path, token.value()).await {
            Ok((200, run)) => {
                let status = run["status"].as_str().unwrap_or("?");
                let what = format!(
                    "{} {}",
                    run["kind"].as_str().unwrap_or("run"),
                    run["name"].as_str().unwrap_or("?")
                );
                if status == "cancelled" {
                    println!("cancelled {} ({what}) on {url}", args.run);
                } else {
                    println!("{} ({what}) on {url} had already ended: {status}", args.run);
                }
                return Ok(ExitCode::SUCCESS);
            }
            Ok((404, _)) => {}
            Ok((status, body)) => problems.push(format!("{url}: {}", token.refusal(status, &body))),
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    eprintln!("flw cancel: no running flw serve has a run {:?}", args.run);
    for p in problems {
        eprintln!("  {p}");
    }
    Ok(ExitCode::from(super::EXIT_CALL_FAILED))
}

#[cfg(test)]
mod tests {
    use super::run_id_problem;

    #[test]
    fn a_run_id_is_r_and_hex_digits() {
        assert_eq!(run_id_problem("r_3f2a9c"), None);
        assert_eq!(run_id_problem("nope"), Some("run ids start with r_"));
        for id in ["r_nothere", "r_"] {
            assert_eq!(
                run_id_problem(id),
                Some("after r_, a run id has only hex digits (0-9, a-f)"),
                "{id}"
            );
        }
    }
}
