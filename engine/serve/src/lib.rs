//! `engine serve`: a live web view of the store, with no other service.
//!
//! - [`views`]: what each page shows, as serializable structs read from the
//!   store (runs, a run, a task, an artifact, refs); the same structs feed
//!   the `/api/...` JSON.
//! - [`graph`]: the stage DAG laid out by the engine (longest-path ranks)
//!   and the timeline of tasks, drawn as inline SVG.
//! - [`pages`]: minijinja templates with auto-escaping, the stylesheet and
//!   the script, all inside the binary.
//! - [`routes`]: the axum routes, a thin layer over [`views`]; live run
//!   pages get server-sent events.
//! - [`live`]: what a live run page receives: the fragments and task rows
//!   that changed since the page was drawn.
//! - [`review`]: the catalog's manual-review queue (`--catalog`): the
//!   queue, a page per video with its player and the teacher's segments on
//!   a timeline, and the accept/fix verdicts; [`video`] serves the file
//!   with range requests so the browser can seek.
//! - [`auth`]: the token, read-only by default, CSRF on every write, safe
//!   headers.
//! - [`error`]: every failure mapped to a status code in one place.

pub mod auth;
pub mod error;
pub mod graph;
pub mod live;
pub mod pages;
pub mod review;
pub mod routes;
pub mod video;
pub mod views;

use engine_core::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How `engine serve` was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Required on every request when set; required to listen beyond loopback.
    pub token: Option<String>,
    /// Allow writes (ref rollback, review verdicts); read-only otherwise.
    pub allow_write: bool,
    /// How often a live run page's record is read again.
    pub poll: Duration,
    /// The catalog whose review queue `/review` shows (as `engine review`
    /// takes it: a SQLite path, `sqlite://PATH` or `postgres://...`).
    pub catalog: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            allow_write: false,
            poll: Duration::from_millis(500),
            catalog: None,
        }
    }
}

/// Everything a request needs, shared by every route.
pub struct Ctx {
    pub store: Store,
    pub token: Option<String>,
    pub allow_write: bool,
    /// This server's CSRF token, put in every write form.
    pub csrf: String,
    pub env: minijinja::Environment<'static>,
    pub common: pages::Common,
    pub poll: Duration,
    /// Ends live event streams when the server stops.
    pub shutdown: CancellationToken,
    /// The review queue's catalog; the review pages say how to give one
    /// when it is `None`.
    pub catalog: Option<catalog::Catalog>,
    /// The snapshots live run pages were drawn from, for their streams.
    pub snapshots: live::Snapshots,
}

/// Refuses to listen beyond loopback without a token: the pages show
/// pipelines, logs and artifacts.
pub fn check_listen(o: &Options) -> Result<(), String> {
    if let Some(t) = &o.token
        && (t.len() < 16 || !t.chars().all(|c| c.is_ascii_graphic()) || t.contains([';', ',']))
    {
        return Err(
            "the token must be at least 16 printable characters without `;` or `,`; make one with `openssl rand -hex 24`".into(),
        );
    }
    if !o.listen.ip().is_loopback() && o.token.is_none() {
        return Err(format!(
            "listening on `{}` (beyond this machine) needs a token: pass `--token TOKEN` or set `ENGINE_SERVE_TOKEN`",
            o.listen
        ));
    }
    Ok(())
}

pub fn context(store: Store, o: &Options, catalog: Option<catalog::Catalog>) -> Ctx {
    let csrf = auth::random_hex();
    Ctx {
        common: pages::Common {
            store: store.url().to_string(),
            allow_write: o.allow_write,
            csrf: csrf.clone(),
        },
        store,
        token: o.token.clone(),
        allow_write: o.allow_write,
        csrf,
        env: pages::environment(),
        poll: o.poll,
        shutdown: CancellationToken::new(),
        catalog,
        snapshots: live::Snapshots::default(),
    }
}

/// A bound server, not yet serving: its address is known (port 0 picks one).
pub struct Server {
    listener: tokio::net::TcpListener,
    pub ctx: Arc<Ctx>,
}

impl Server {
    pub async fn bind(store: Store, o: &Options) -> Result<Server, String> {
        check_listen(o)?;
        // Opened before listening: a wrong URL fails at start, not on the
        // first review page.
        let catalog = match &o.catalog {
            None => None,
            Some(url) => {
                catalog::prepare_default(url).map_err(|e| e.to_string())?;
                Some(
                    catalog::Catalog::open(url)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        let listener = tokio::net::TcpListener::bind(o.listen).await.map_err(|e| {
            format!(
                "Failed to listen on `{}`: {e}; pick another with `--listen ADDR:PORT`",
                o.listen
            )
        })?;
        Ok(Server {
            listener,
            ctx: Arc::new(context(store, o, catalog)),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `stop` completes; live event streams end with it.
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shutdown = self.ctx.shutdown.clone();
        let app = routes::router(self.ctx);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                stop.await;
                shutdown.cancel();
            })
            .await
    }
}

/// `engine serve`: binds, says where, and serves until Ctrl-C or SIGTERM.
pub async fn serve(store: Store, o: &Options) -> Result<(), String> {
    let server = Server::bind(store, o).await?;
    let addr = server.addr();
    let url = if addr.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", addr.port())
    } else {
        format!("http://{addr}")
    };
    eprintln!(
        "engine serve: {url}/runs (store {}{}, {}{}); Ctrl-C stops",
        server.ctx.store.url(),
        match &server.ctx.catalog {
            Some(c) => format!(", review queue of catalog {} at {url}/review", c.url()),
            None => String::new(),
        },
        if o.allow_write {
            "writes allowed"
        } else {
            "read-only"
        },
        if o.token.is_some() {
            ", token required: open it once with ?token=TOKEN"
        } else {
            ""
        },
    );
    server
        .run(async {
            #[cfg(unix)]
            {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(_) => {
                            let _ = tokio::signal::ctrl_c().await;
                            return;
                        }
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("Failed to serve on `{addr}`: {e}"))
}
