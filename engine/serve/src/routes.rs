//! The routes: a thin layer that reads the request, calls a [`views`]
//! function and renders its struct as a page or JSON.

use crate::error::{Result, ServeError};
use crate::{Ctx, auth, live, pages, review, views};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use futures::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

type S = State<Arc<Ctx>>;

pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/runs") }))
        .route("/runs", get(runs_page))
        .route("/api/runs", get(runs_json))
        .route("/runs/{id}", get(run_page))
        .route("/api/runs/{id}", get(run_json))
        .route("/runs/{id}/events", get(run_events))
        .route("/runs/{id}/tasks/{task}", get(task_page))
        .route("/api/runs/{id}/tasks/{task}", get(task_json))
        .route("/runs/{id}/tasks/{task}/log", get(task_log))
        .route("/artifacts/{digest}", get(artifact_page))
        .route("/artifacts/{digest}/files/{*name}", get(artifact_file))
        .route("/refs", get(refs_page))
        .route("/api/refs", get(refs_json))
        .route("/refs/rollback", post(rollback))
        .route("/compare", get(compare_page))
        .merge(review::routes())
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", pages::STYLE_CSS) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", pages::APP_JS) }),
        )
        .fallback(|uri: axum::http::Uri| async move {
            ServeError::NotFound(format!("no page `{}`; start at /runs", uri.path()))
        })
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            auth::guard,
        ))
        .with_state(ctx)
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn page<T: serde::Serialize>(ctx: &Ctx, name: &str, data: &T) -> Result<Html<String>> {
    pages::render(&ctx.env, name, &ctx.common, data).map(Html)
}

#[derive(Deserialize, Default)]
struct RunsQuery {
    #[serde(default)]
    pipeline: String,
    #[serde(default)]
    status: String,
    limit: Option<usize>,
}

async fn runs_data(ctx: &Ctx, q: &RunsQuery) -> Result<views::RunsPage> {
    views::runs(
        &ctx.store,
        &q.pipeline,
        &q.status,
        q.limit.unwrap_or(200).clamp(1, 10_000),
    )
    .await
}

async fn runs_page(State(ctx): S, Query(q): Query<RunsQuery>) -> Result<Html<String>> {
    page(&ctx, "runs.html", &runs_data(&ctx, &q).await?)
}

async fn runs_json(State(ctx): S, Query(q): Query<RunsQuery>) -> Result<Json<views::RunsPage>> {
    Ok(Json(runs_data(&ctx, &q).await?))
}

async fn run_page(State(ctx): S, Path(id): Path<String>) -> Result<Html<String>> {
    let r = views::load_run(&ctx.store, &id).await?;
    let mut view = views::run_view(&r);
    if view.live {
        let key = ctx.snapshots.keep(live::Snapshot::of(&view));
        view.events_url = Some(format!("{}/events?since={key}", view.run.url));
    }
    page(&ctx, "run.html", &view)
}

async fn run_json(State(ctx): S, Path(id): Path<String>) -> Result<Json<views::RunView>> {
    let r = views::load_run(&ctx.store, &id).await?;
    Ok(Json(views::run_view(&r)))
}

#[derive(Deserialize)]
struct EventsQuery {
    /// The key of the snapshot the page was drawn from ([`live`]).
    since: Option<String>,
}

/// Server-sent events for a run page: the record (with its event batches)
/// is read every `ctx.poll`; what changed since the page was drawn goes
/// out as one `update` ([`live::Follower`]); when the run is over, a last
/// update and an `end`.
async fn run_events(
    State(ctx): S,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    views::load_run(&ctx.store, &id).await?;
    let since = q.since.as_deref().and_then(|k| ctx.snapshots.get(k));
    struct Poll {
        ctx: Arc<Ctx>,
        id: String,
        follower: live::Follower,
        ended: bool,
        /// Read once already: wait a poll before reading again, so a
        /// header whose duration ticks cannot make this a busy loop.
        read: bool,
    }
    let start = Poll {
        ctx,
        id,
        follower: live::Follower::new(since),
        ended: false,
        read: false,
    };
    let stream = futures::stream::unfold(start, |mut p| async move {
        if p.ended {
            return None;
        }
        loop {
            if p.read {
                tokio::select! {
                    _ = tokio::time::sleep(p.ctx.poll) => {}
                    _ = p.ctx.shutdown.cancelled() => return None,
                }
            }
            p.read = true;
            if p.ctx.shutdown.is_cancelled() {
                return None;
            }
            if let Ok(Some(r)) = engine_core::records::load_run(&p.ctx.store, &p.id).await {
                let view = views::run_view(&r);
                if !view.live {
                    p.ended = true;
                }
                match p.follower.update(&p.ctx, &view) {
                    Ok(Some(json)) => {
                        return Some((Ok(Event::default().event("update").data(json)), p));
                    }
                    Ok(None) if p.ended => {
                        return Some((Ok(Event::default().event("end").data("")), p));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Some((
                            Ok(Event::default().event("failure").data(e.to_string())),
                            p,
                        ));
                    }
                }
            }
        }
    });
    // After the final update, tell the page to stop listening.
    let stream = futures::StreamExt::chain(
        stream,
        futures::stream::once(async { Ok(Event::default().event("end").data("")) }),
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn task_page(
    State(ctx): S,
    Path((id, task)): Path<(String, String)>,
) -> Result<Html<String>> {
    let r = views::load_run(&ctx.store, &id).await?;
    page(
        &ctx,
        "task.html",
        &views::task_view(&ctx.store, &r, &task).await?,
    )
}

async fn task_json(
    State(ctx): S,
    Path((id, task)): Path<(String, String)>,
) -> Result<Json<views::TaskView>> {
    let r = views::load_run(&ctx.store, &id).await?;
    Ok(Json(views::task_view(&ctx.store, &r, &task).await?))
}

async fn task_log(State(ctx): S, Path((id, task)): Path<(String, String)>) -> Result<Response> {
    let r = views::load_run(&ctx.store, &id).await?;
    let log = views::task_log(&ctx.store, &r, &task).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}

async fn artifact_page(State(ctx): S, Path(digest): Path<String>) -> Result<Html<String>> {
    let d = views::parse_digest(&digest)?;
    page(
        &ctx,
        "artifact.html",
        &views::artifact_view(&ctx.store, &d).await?,
    )
}

#[derive(Deserialize)]
struct FileQuery {
    download: Option<String>,
}

/// A file of an artifact. HTML is served under a sandbox policy: a report
/// may run its own script, but in an origin of its own, away from this
/// server's pages, cookies and write forms.
async fn artifact_file(
    State(ctx): S,
    Path((digest, name)): Path<(String, String)>,
    Query(q): Query<FileQuery>,
) -> Result<Response> {
    let d = views::parse_digest(&digest)?;
    let bytes = views::artifact_file(&ctx.store, &d, &name).await?;
    let file = name
        .rsplit('/')
        .next()
        .unwrap_or(&name)
        .replace(['"', '\\', '\r', '\n'], "_");
    let mut res = ([(header::CONTENT_TYPE, views::content_type(&name))], bytes).into_response();
    let h = res.headers_mut();
    h.insert(
        "content-security-policy",
        header::HeaderValue::from_static(
            "sandbox allow-scripts; default-src 'self' 'unsafe-inline' data:",
        ),
    );
    if q.download.is_some()
        && let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{file}\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

async fn refs_page(State(ctx): S) -> Result<Html<String>> {
    page(&ctx, "refs.html", &views::refs(&ctx.store).await?)
}

async fn refs_json(State(ctx): S) -> Result<Json<views::RefsPage>> {
    Ok(Json(views::refs(&ctx.store).await?))
}

#[derive(Deserialize)]
struct RollbackForm {
    #[serde(default)]
    csrf: String,
    name: String,
    to: usize,
}

async fn rollback(State(ctx): S, Form(f): Form<RollbackForm>) -> Result<Redirect> {
    auth::check_csrf(&ctx, &f.csrf)?;
    views::rollback(&ctx.store, &f.name, f.to).await?;
    Ok(Redirect::to(&format!("/refs#{}", views::enc(&f.name))))
}

#[derive(Deserialize)]
struct CompareQuery {
    #[serde(default)]
    a: String,
    #[serde(default)]
    b: String,
}

async fn compare_page(State(ctx): S, Query(q): Query<CompareQuery>) -> Result<Html<String>> {
    page(
        &ctx,
        "compare.html",
        &views::compare(&ctx.store, &q.a, &q.b).await?,
    )
}
