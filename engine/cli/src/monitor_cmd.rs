//! `engine monitor`: per-league precision and recall of production
//! predictions from review verdicts over a sliding window (the figures are
//! `catalog::monitor`'s), judged against the `monitor:` thresholds of the
//! sport's values file; Prometheus text to a file or over HTTP; and when a
//! league fails, an exit code for CI or a run of the sport's pipeline.
//!
//! Exit codes: 0 nothing failing (or nothing to judge, or `--trigger none`),
//! 3 a league fails with `--trigger exit`, 1 an error; `--trigger run`
//! returns the pipeline run's code.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use catalog::Catalog;
use catalog::monitor::{self, MonitorReport, MonitorSettings, Status};
use clap::{Args, ValueEnum};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The exit code of `--trigger exit` when a league fails.
pub const EXIT_FAILING: u8 = 3;

/// Sport names of values files that the catalog spells otherwise (the
/// catalog uses the generator's names). A values file may also say
/// `catalog_sport:` explicitly.
const SPORT_ALIASES: [(&str, &str); 1] = [("hockey", "ice-hockey")];

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Trigger {
    /// Report only (exit 0).
    None,
    /// Exit with code 3 when a league fails, printing the command to run.
    Exit,
    /// Run the sport's pipeline for the failing leagues (exit code: the run's).
    Run,
}

#[derive(Args)]
pub struct MonitorArgs {
    /// The catalog's sport (`soccer`, `basketball`, `ice-hockey`; `hockey`
    /// is read as `ice-hockey`). Default: the values file's `catalog_sport:`
    /// or `sport:`.
    #[arg(long)]
    sport: Option<String>,
    /// The catalog: a SQLite path, `sqlite://PATH` or `postgres://...`.
    #[arg(long, visible_alias = "catalog", env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
    db: String,
    /// The sport's values file (e.g. `pipelines/sports/basketball.yaml`):
    /// thresholds under `monitor:`, and the values of a triggered run.
    #[arg(long = "values", short = 'f', value_name = "VALUES_FILE")]
    values: PathBuf,
    /// The sliding window, e.g. `14d`, `36h` (default: `monitor.window`, else 14d).
    #[arg(long)]
    window: Option<String>,
    /// Write Prometheus text to this file (atomically: a temporary file, then rename).
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
    /// Serve Prometheus text at `http://ADDR/metrics` (e.g. `127.0.0.1:9464`;
    /// port 0 picks one); keeps running, recomputing every `--watch` (default 1m).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// What to do when a league fails.
    #[arg(long, value_enum, default_value = "none")]
    trigger: Trigger,
    /// The pipeline a trigger runs: one cycle of the loop.
    #[arg(long, default_value = "pipelines/continual.yaml.j2")]
    pipeline: PathBuf,
    /// More `key=value` overrides for the triggered run (repeatable), e.g.
    /// `--set catalog=/data/catalog.db`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Repeat every DURATION (e.g. `10m`) until Ctrl-C.
    #[arg(long, value_name = "DURATION")]
    watch: Option<String>,
    /// Only verdicts on this model version's predictions (and misses on its videos).
    #[arg(long)]
    model: Option<String>,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// What a round found.
enum Outcome {
    NoVerdicts,
    Judged(MonitorReport),
}

pub async fn run(args: MonitorArgs) -> anyhow::Result<u8> {
    let values = engine_core::template::load_values(std::slice::from_ref(&args.values), &[])
        .map_err(|d| anyhow::anyhow!("{}", d.render()))?;
    let sport = sport_of(args.sport.as_deref(), &values, &args.values)?;
    let mut settings: MonitorSettings = match values.get("monitor") {
        None | Some(Value::Null) => MonitorSettings::default(),
        Some(v) => serde_json::from_value(v.clone()).with_context(|| {
            format!(
                "Failed to read `monitor:` in `{}`; expected e.g. `monitor: {{ window: 14d, precision: 0.9, recall: 0.9, min_verdicts: 3, leagues: {{ LEAGUE: {{ recall: 0.8 }} }} }}`",
                args.values.display()
            )
        })?,
    };
    if let Some(w) = &args.window {
        settings.window = w.clone();
    }
    let window = duration(&settings.window, "window")?;
    let every = match (&args.watch, &args.listen) {
        (Some(w), _) => Some(duration(w, "watch")?),
        (None, Some(_)) => Some(Duration::from_secs(60)),
        (None, None) => None,
    };
    let served = Arc::new(RwLock::new(String::new()));
    if let Some(addr) = &args.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("Failed to listen on `--listen {addr}`; pick a free `HOST:PORT`, e.g. `127.0.0.1:9464`"))?;
        let bound = listener.local_addr()?;
        outln!("serving Prometheus metrics at http://{bound}/metrics");
        tokio::spawn(serve(listener, served.clone()));
    }
    let mut last_triggered: Option<Vec<String>> = None;
    loop {
        let outcome = round(&args, &sport, &settings, window).await?;
        let text = match &outcome {
            Outcome::Judged(r) => monitor::prometheus(r),
            Outcome::NoVerdicts => monitor::prometheus(&monitor::judge(&sport, &[], &settings)),
        };
        if let Some(path) = &args.metrics {
            write_atomic(path, &text)?;
        }
        *served.write().expect("metrics lock") = text;
        // Printed after the metrics are published, so a reader of the
        // output finds them served.
        if let Outcome::Judged(report) = &outcome {
            if args.json {
                outln!("{}", serde_json::to_string_pretty(report)?);
            } else {
                out!("{}", report_text(report));
            }
            let failing: Vec<String> = report.failing().iter().map(|s| s.to_string()).collect();
            if !failing.is_empty() {
                let cmd = pipeline_args(&args, &failing);
                let shown = format!("engine {}", cmd.join(" "));
                match args.trigger {
                    Trigger::None => outln!("to retrain for the failing league(s), run: {shown}"),
                    Trigger::Exit => {
                        outln!("failing league(s): {}; run: {shown}", failing.join(", "));
                        return Ok(EXIT_FAILING);
                    }
                    Trigger::Run if every.is_none() => return run_pipeline(&cmd, &shown).await,
                    Trigger::Run => {
                        // Watching: run once per distinct set of failing leagues.
                        if last_triggered.as_ref() != Some(&failing) {
                            let code = run_pipeline(&cmd, &shown).await?;
                            outln!("the triggered run exited with code {code}; watching on");
                            last_triggered = Some(failing);
                        }
                    }
                }
            } else {
                last_triggered = None;
            }
        }
        let Some(every) = every else {
            return Ok(0);
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(0),
        }
    }
}

/// The catalog's sport: `--sport`, or the values file's `catalog_sport:` /
/// `sport:`, with [`SPORT_ALIASES`] applied; `--sport` and the file must agree.
fn sport_of(flag: Option<&str>, values: &Value, file: &Path) -> anyhow::Result<String> {
    let alias = |s: &str| {
        SPORT_ALIASES
            .iter()
            .find(|(a, _)| *a == s)
            .map(|(_, c)| c.to_string())
            .unwrap_or_else(|| s.to_string())
    };
    let from_file = values
        .get("catalog_sport")
        .or_else(|| values.get("sport"))
        .and_then(Value::as_str)
        .map(alias);
    match (flag.map(alias), from_file) {
        (Some(f), Some(v)) if f != v => bail!(
            "`--sport {}` does not match the values file `{}`, which is for `{v}`; pass that sport's values file (`pipelines/sports/*.yaml`) or leave `--sport` out",
            flag.unwrap_or_default(),
            file.display()
        ),
        (Some(s), _) | (None, Some(s)) => Ok(s),
        (None, None) => bail!(
            "no sport: pass `--sport SPORT` or give `sport:` in the values file `{}`",
            file.display()
        ),
    }
}

fn duration(text: &str, what: &str) -> anyhow::Result<Duration> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => bail!(
            "Failed to read the {what} `{text}`: expected a duration such as `14d`, `36h` or `10m`"
        ),
    }
}

async fn round(
    args: &MonitorArgs,
    sport: &str,
    settings: &MonitorSettings,
    window: Duration,
) -> anyhow::Result<Outcome> {
    catalog::prepare_default(&args.db)?;
    let cat = Catalog::open(&args.db).await?;
    let rows = cat
        .verdict_rows(sport, &monitor::since(window), args.model.as_deref())
        .await;
    cat.close().await;
    let rows = rows?;
    if rows.is_empty() {
        outln!(
            "no review verdicts for {sport} in the last {}; nothing to judge",
            settings.window
        );
        return Ok(Outcome::NoVerdicts);
    }
    Ok(Outcome::Judged(monitor::judge(sport, &rows, settings)))
}

fn ratio(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

fn report_text(r: &MonitorReport) -> String {
    let mut out = format!(
        "{}: {} verdict(s) in the last {}\n",
        r.sport,
        r.verdicts(),
        r.window
    );
    let rows: Vec<Vec<String>> = r
        .leagues
        .iter()
        .map(|l| {
            vec![
                l.league.clone(),
                l.figures.verdicts.to_string(),
                l.figures.tp.to_string(),
                l.figures.fp.to_string(),
                l.figures.fn_.to_string(),
                ratio(l.figures.precision),
                ratio(l.figures.recall),
                format!(
                    "P>={} R>={} n>={}",
                    l.precision_threshold, l.recall_threshold, l.min_verdicts
                ),
                l.status.as_str().to_string(),
            ]
        })
        .collect();
    out.push_str(&crate::review_cmd::render_table(
        &[
            "league",
            "verdicts",
            "TP",
            "FP",
            "FN",
            "precision",
            "recall",
            "threshold",
            "status",
        ],
        rows,
    ));
    let rows: Vec<Vec<String>> = r
        .broadcasters
        .iter()
        .map(|b| {
            vec![
                b.broadcaster.clone(),
                b.figures.verdicts.to_string(),
                b.figures.tp.to_string(),
                b.figures.fp.to_string(),
                b.figures.fn_.to_string(),
                ratio(b.figures.precision),
                ratio(b.figures.recall),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&crate::review_cmd::render_table(
        &[
            "broadcaster",
            "verdicts",
            "TP",
            "FP",
            "FN",
            "precision",
            "recall",
        ],
        rows,
    ));
    let failing = r.failing();
    let too_few = r
        .leagues
        .iter()
        .filter(|l| l.status == Status::TooFew)
        .count();
    out.push_str(&if failing.is_empty() {
        format!("no league below its thresholds ({too_few} with too few verdicts to judge)\n")
    } else {
        format!("FAILING: {}\n", failing.join(", "))
    });
    out
}

/// `run PIPELINE -f VALUES --set problem_leagues=[a,b]`.
fn pipeline_args(args: &MonitorArgs, failing: &[String]) -> Vec<String> {
    vec![
        "run".into(),
        args.pipeline.display().to_string(),
        "-f".into(),
        args.values.display().to_string(),
        "--set".into(),
        format!("problem_leagues=[{}]", failing.join(",")),
    ]
    .into_iter()
    .chain(
        args.sets
            .iter()
            .flat_map(|s| ["--set".to_string(), s.clone()]),
    )
    .collect()
}

async fn run_pipeline(cmd: &[String], shown: &str) -> anyhow::Result<u8> {
    outln!("triggering: {shown}");
    let exe = std::env::current_exe()
        .context("Failed to find the `engine` executable to run the pipeline")?;
    let status = tokio::process::Command::new(&exe)
        .args(cmd)
        .status()
        .await
        .with_context(|| format!("Failed to start `{shown}`"))?;
    Ok(status.code().map(|c| c.clamp(0, 255) as u8).unwrap_or(1))
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path.file_name().with_context(|| {
        format!(
            "Failed to write metrics to `{}`: not a file path; give e.g. `--metrics monitor.prom`",
            path.display()
        )
    })?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| {
            let _ = std::fs::remove_file(&tmp);
            format!(
                "Failed to write metrics to `{}`; check that its folder exists and is writable",
                path.display()
            )
        })
}

/// A minimal HTTP/1.1 responder: `GET /metrics` gets the latest text, anything else 404.
async fn serve(listener: tokio::net::TcpListener, text: Arc<RwLock<String>>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let text = text.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => {
                        n += k;
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let mut first = head.lines().next().unwrap_or("").split_whitespace();
            let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
            let (status, kind, body) =
                if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
                    (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        text.read().expect("metrics lock").clone(),
                    )
                } else {
                    (
                        "404 Not Found",
                        "text/plain; charset=utf-8",
                        "not found; the metrics are at /metrics\n".to_string(),
                    )
                };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sports_resolve_with_aliases() {
        let f = Path::new("v.yaml");
        assert_eq!(
            sport_of(None, &json!({"sport": "hockey"}), f).unwrap(),
            "ice-hockey"
        );
        assert_eq!(
            sport_of(Some("hockey"), &json!({"sport": "ice-hockey"}), f).unwrap(),
            "ice-hockey"
        );
        assert_eq!(
            sport_of(
                None,
                &json!({"sport": "hockey", "catalog_sport": "field-hockey"}),
                f
            )
            .unwrap(),
            "field-hockey"
        );
        let e = sport_of(Some("soccer"), &json!({"sport": "basketball"}), f)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`--sport soccer`") && e.contains("`basketball`"),
            "{e}"
        );
        assert!(sport_of(None, &json!({}), f).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            duration("14d", "window").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(duration("10m", "watch").unwrap(), Duration::from_secs(600));
        let e = duration("soon", "window").unwrap_err().to_string();
        assert!(e.contains("`soon`") && e.contains("14d"), "{e}");
    }
}
