//! The catalog's manual-review queue in the browser: `/review` lists the
//! videos the teacher was unsure about, `/review/{id}` plays one with the
//! teacher's segments on a timeline, and a reviewer accepts them or types
//! the right ones. Verdicts go through `Catalog::record_verdict`, exactly as
//! `engine review accept|fix` records them, so the next run cannot tell a
//! web verdict from a CLI one. Videos are named by catalog id only: the file
//! served is the catalog's, never a path from the request.

use crate::error::{Result, ServeError};
use crate::{Ctx, auth, pages, video};
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, Json, Redirect, Response};
use axum::routing::{get, post};
use catalog::{Catalog, CatalogError, NewLabel, QueueEntry, QueueVerdict, VideoKey};
use serde::Serialize;
use std::sync::Arc;

type S = State<Arc<Ctx>>;

pub const NO_CATALOG: &str = "no catalog: start with `engine serve --catalog URL` (a SQLite path, `sqlite://PATH` or `postgres://...`, as `engine review` takes it) to review videos here";

/// The reviewer when the form leaves the field empty.
pub const DEFAULT_REVIEWER: &str = "web";

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/review", get(queue_page))
        .route("/api/review", get(queue_json))
        .route("/review/{id}", get(video_page))
        .route("/api/review/{id}", get(video_json))
        .route("/review/{id}/video", get(video_file))
        .route("/review/{id}/accept", post(accept))
        .route("/review/{id}/fix", post(fix))
}

/// `/review` and `/api/review`.
#[derive(Debug, Serialize)]
pub struct QueuePage {
    /// The catalog URL, password hidden; `None` without `--catalog`.
    pub catalog: Option<String>,
    /// Why the page is empty when there is no catalog.
    pub message: Option<String>,
    pub videos: Vec<QueueItem>,
}

/// One queued video, as the queue and its own page show it.
#[derive(Debug, Serialize)]
pub struct QueueItem {
    /// The queue entry's id: a verdict from the page closes this entry.
    pub entry: i64,
    pub video_id: i64,
    pub uri: String,
    /// The file name, for lists where the whole path is noise.
    pub name: String,
    pub sport: Option<String>,
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    /// The teacher's video-level confidence; `None` when it could not tag.
    pub confidence: Option<f64>,
    pub proposals: Vec<Span>,
    pub reason: Option<String>,
    pub queued_by: Option<String>,
    pub queued_at: String,
    /// `pending` or `done`.
    pub status: String,
    /// `accepted` or `fixed` once done, with who and when.
    pub verdict: Option<String>,
    pub reviewer: Option<String>,
    pub done_at: Option<String>,
    pub url: String,
}

/// A replay span, with its place on the page's timeline.
#[derive(Debug, Serialize)]
pub struct Span {
    pub start_s: f64,
    pub end_s: f64,
    /// `START-END` exactly as the fix form reads it back, so submitting
    /// the proposals unchanged records the same numbers.
    pub text: String,
}

/// `/review/{id}` and `/api/review/{id}`.
#[derive(Debug, Serialize)]
pub struct VideoPage {
    pub catalog: String,
    pub video: QueueItem,
    /// From the catalog; the timeline's scale until the player knows better.
    pub duration_s: f64,
    pub video_url: String,
    pub accept_url: String,
    pub fix_url: String,
    /// Set when the file is not on disk: the page says so instead of a
    /// player that never loads.
    pub missing_file: Option<String>,
    /// The video's `human` labels: what the verdict recorded.
    pub human: Vec<Span>,
    pub default_reviewer: &'static str,
}

fn span(start_s: f64, end_s: f64) -> Span {
    Span {
        start_s,
        end_s,
        text: format!("{start_s}-{end_s}"),
    }
}

fn spans(labels: &[NewLabel]) -> Vec<Span> {
    labels.iter().map(|l| span(l.start_s, l.end_s)).collect()
}

fn item(e: QueueEntry) -> QueueItem {
    let name = std::path::Path::new(&e.uri)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| e.uri.clone());
    QueueItem {
        url: format!("/review/{}", e.video_id),
        entry: e.id,
        video_id: e.video_id,
        name,
        proposals: spans(&e.proposals),
        uri: e.uri,
        sport: e.sport,
        league: e.league,
        broadcaster: e.broadcaster,
        confidence: e.confidence,
        reason: e.reason,
        queued_by: e.queued_by,
        queued_at: e.queued_at,
        status: e.status,
        verdict: e.verdict,
        reviewer: e.reviewer,
        done_at: e.done_at,
    }
}

fn catalog(ctx: &Ctx) -> Result<&Catalog> {
    ctx.catalog
        .as_ref()
        .ok_or_else(|| ServeError::NotFound(NO_CATALOG.into()))
}

fn video_id(text: &str) -> Result<i64> {
    text.parse::<i64>().map_err(|_| {
        ServeError::BadRequest(format!(
            "`{text}` is not a video id: the review pages name videos by their catalog id (a number), as /review lists them"
        ))
    })
}

/// The video's entries, newest first; an unknown id or a video that was
/// never queued is a 404.
async fn entries(cat: &Catalog, id: i64) -> Result<Vec<QueueEntry>> {
    // Checked apart: `reviews_of` reports an unknown video and a damaged
    // entry alike, and only the first is the request's fault.
    cat.video_id(VideoKey::Id(id)).await.map_err(|e| match e {
        CatalogError::Invalid(_) => ServeError::NotFound(format!(
            "no video with id {id} in the catalog `{}`; /review lists the queued videos",
            cat.url()
        )),
        e => e.into(),
    })?;
    let all = cat.reviews_of(VideoKey::Id(id)).await?;
    if all.is_empty() {
        return Err(ServeError::NotFound(format!(
            "video {id} is in the catalog `{}` but was never queued for review; `engine review fix {id} --segments ...` records spans for any video",
            cat.url()
        )));
    }
    Ok(all)
}

/// The entry a page shows: the pending one, else the latest verdict.
fn current(all: Vec<QueueEntry>) -> Option<QueueEntry> {
    let pending = all.iter().position(|e| e.status == "pending");
    all.into_iter().nth(pending.unwrap_or(0))
}

/// The pending entry a verdict closes; 409 when the video was reviewed.
async fn pending(cat: &Catalog, id: i64) -> Result<QueueEntry> {
    let all = entries(cat, id).await?;
    if let Some(e) = all.iter().find(|e| e.status == "pending") {
        return Ok(e.clone());
    }
    let last = &all[0];
    Err(ServeError::Conflict(format!(
        "video {id} (`{}`) was already reviewed: {} by {} at {}; /review lists the videos still waiting (`engine review fix {id} --segments ...` replaces a verdict)",
        last.uri,
        last.verdict.as_deref().unwrap_or("closed"),
        last.reviewer.as_deref().unwrap_or("an unknown reviewer"),
        last.done_at.as_deref().unwrap_or("an unknown time"),
    )))
}

/// The file path a catalog uri names, or why it cannot be played here.
fn local_path(uri: &str) -> std::result::Result<std::path::PathBuf, String> {
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    if path.contains("://") {
        return Err(format!(
            "the video is at `{uri}`, not a file on this machine; engine serve plays local files only"
        ));
    }
    Ok(std::path::PathBuf::from(path))
}

/// The video's duration in the catalog (0 when unknown).
async fn duration(cat: &Catalog, id: i64) -> Result<f64> {
    let rows = cat
        .query(
            "SELECT duration_s FROM videos WHERE id = $1",
            &[serde_json::json!(id)],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.get("duration_s"))
        .and_then(|d| d.as_f64())
        .filter(|d| d.is_finite() && *d > 0.0)
        .unwrap_or(0.0))
}

async fn queue(ctx: &Ctx) -> Result<QueuePage> {
    let Some(cat) = &ctx.catalog else {
        return Ok(QueuePage {
            catalog: None,
            message: Some(NO_CATALOG.into()),
            videos: vec![],
        });
    };
    Ok(QueuePage {
        catalog: Some(cat.url().to_string()),
        message: None,
        videos: cat
            .review_queue(true)
            .await?
            .into_iter()
            .map(item)
            .collect(),
    })
}

async fn video_view(ctx: &Ctx, id: &str) -> Result<VideoPage> {
    let cat = catalog(ctx)?;
    let id = video_id(id)?;
    let entry = current(entries(cat, id).await?)
        .ok_or_else(|| ServeError::NotFound(format!("video {id} has no review entry")))?;
    let missing_file = match local_path(&entry.uri) {
        Err(why) => Some(why),
        Ok(p) if !p.is_file() => Some(format!(
            "the file `{}` is not on disk; restore it to play the video (the verdict can still be recorded)",
            entry.uri
        )),
        Ok(_) => None,
    };
    let human = cat
        .labels_for(VideoKey::Id(id))
        .await?
        .iter()
        .filter(|l| l.source == "human")
        .map(|l| span(l.start_s, l.end_s))
        .collect();
    Ok(VideoPage {
        catalog: cat.url().to_string(),
        duration_s: duration(cat, id).await?,
        video_url: format!("/review/{id}/video"),
        accept_url: format!("/review/{id}/accept"),
        fix_url: format!("/review/{id}/fix"),
        missing_file,
        human,
        default_reviewer: DEFAULT_REVIEWER,
        video: item(entry),
    })
}

fn page<T: Serialize>(ctx: &Ctx, name: &str, data: &T) -> Result<Html<String>> {
    pages::render(&ctx.env, name, &ctx.common, data).map(Html)
}

async fn queue_page(State(ctx): S) -> Result<Html<String>> {
    page(&ctx, "review.html", &queue(&ctx).await?)
}

async fn queue_json(State(ctx): S) -> Result<Json<QueuePage>> {
    Ok(Json(queue(&ctx).await?))
}

async fn video_page(State(ctx): S, Path(id): Path<String>) -> Result<Html<String>> {
    page(&ctx, "review_video.html", &video_view(&ctx, &id).await?)
}

async fn video_json(State(ctx): S, Path(id): Path<String>) -> Result<Json<VideoPage>> {
    Ok(Json(video_view(&ctx, &id).await?))
}

/// The video's file, looked up by id: any video of the catalog, since a
/// reviewer may look at one after its verdict.
async fn video_file(State(ctx): S, Path(id): Path<String>, headers: HeaderMap) -> Result<Response> {
    let cat = catalog(&ctx)?;
    let id = video_id(&id)?;
    let rows = cat
        .query(
            "SELECT uri FROM videos WHERE id = $1",
            &[serde_json::json!(id)],
        )
        .await?;
    let Some(uri) = rows
        .first()
        .and_then(|r| r.get("uri"))
        .and_then(|u| u.as_str())
    else {
        return Err(ServeError::NotFound(format!(
            "no video with id {id} in the catalog `{}`; /review lists the queued videos",
            cat.url()
        )));
    };
    let path = local_path(uri).map_err(|why| ServeError::NotFound(format!("video {id}: {why}")))?;
    video::serve_file(
        &path,
        &format!("the file of video {id} (uri `{uri}`)"),
        &headers,
    )
    .await
}

/// The verdict form: repeated `segment` fields need a list of pairs, which
/// a struct cannot read.
struct VerdictForm {
    csrf: String,
    reviewer: String,
    segments: Vec<String>,
    /// The queue entry the page showed (absent: the pending one).
    entry: Option<i64>,
}

impl VerdictForm {
    fn read(fields: Vec<(String, String)>) -> Result<VerdictForm> {
        let mut f = VerdictForm {
            csrf: String::new(),
            reviewer: String::new(),
            segments: vec![],
            entry: None,
        };
        for (k, v) in fields {
            match k.as_str() {
                "csrf" => f.csrf = v,
                "reviewer" => f.reviewer = v.trim().to_string(),
                "segment" => f.segments.push(v),
                "entry" if !v.is_empty() => {
                    f.entry = Some(v.trim().parse().map_err(|_| {
                        ServeError::BadRequest(format!(
                            "`{v}` is not a review entry id (a number); reload the video's page"
                        ))
                    })?)
                }
                _ => {}
            }
        }
        if f.reviewer.is_empty() {
            f.reviewer = DEFAULT_REVIEWER.into();
        }
        if f.reviewer.chars().count() > 100 || f.reviewer.chars().any(char::is_control) {
            return Err(ServeError::BadRequest(
                "the reviewer name must be at most 100 characters with no control characters; type a name or leave it empty for `web`".into(),
            ));
        }
        Ok(f)
    }

    /// The typed rows as spans, by the rules `engine review fix --segments`
    /// follows; blank rows are ignored, no rows at all means no replays.
    fn spans(&self) -> Result<Vec<NewLabel>> {
        let rows: Vec<&str> = self
            .segments
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(row) = rows.iter().find(|r| r.contains(',')) {
            return Err(ServeError::BadRequest(format!(
                "Failed to read the segment `{row}`: one segment per row; add a row for each START-END pair"
            )));
        }
        let text = rows.join(",");
        catalog::parse_spans(&text).map_err(|what| {
            ServeError::BadRequest(format!(
                "Failed to read the segments `{text}`: {what}; write each row as START-END in seconds, e.g. 12.0-18.5"
            ))
        })
    }
}

/// A verdict the catalog refused because another reviewer got there first
/// is a 409.
fn verdict_error(e: CatalogError) -> ServeError {
    match e {
        CatalogError::Conflict(m) => ServeError::Conflict(m),
        e => e.into(),
    }
}

async fn accept(
    State(ctx): S,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Redirect> {
    verdict(&ctx, &id, fields, QueueVerdict::Accepted).await
}

async fn fix(
    State(ctx): S,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Redirect> {
    verdict(&ctx, &id, fields, QueueVerdict::Fixed).await
}

/// Records an accept (the teacher's segments) or a fix (the typed ones),
/// then shows the video's page again.
async fn verdict(
    ctx: &Ctx,
    id: &str,
    fields: Vec<(String, String)>,
    kind: QueueVerdict,
) -> Result<Redirect> {
    let f = VerdictForm::read(fields)?;
    auth::check_csrf(ctx, &f.csrf)?;
    let spans = match kind {
        QueueVerdict::Fixed => f.spans()?,
        _ => vec![],
    };
    let cat = catalog(ctx)?;
    let id = video_id(id)?;
    // The entry the page showed, else the video's pending one; recorded
    // only if it is still pending when the verdict is written (409 when
    // another reviewer closed it first). `record_verdict` would record a
    // verdict on a reviewed video as a second one, overwriting the first
    // reviewer's labels.
    let entry = match f.entry {
        Some(e) => {
            if !entries(cat, id).await?.iter().any(|x| x.id == e) {
                return Err(ServeError::BadRequest(format!(
                    "review entry {e} is not an entry of video {id}; reload /review/{id}"
                )));
            }
            e
        }
        None => pending(cat, id).await?.id,
    };
    cat.record_verdict_if_pending(entry, kind, &spans, &f.reviewer)
        .await
        .map_err(verdict_error)?;
    Ok(Redirect::to(&format!("/review/{id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Result<VerdictForm> {
        VerdictForm::read(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_form_reads_rows_and_refuses_bad_ones_with_the_reason() {
        let f = form(&[
            ("segment", "40-47.2"),
            ("segment", " "),
            ("segment", "1-2.5"),
        ])
        .unwrap();
        assert_eq!(f.reviewer, "web");
        let s = f.spans().unwrap();
        assert_eq!(
            s.iter().map(|l| (l.start_s, l.end_s)).collect::<Vec<_>>(),
            [(1.0, 2.5), (40.0, 47.2)]
        );
        assert!(form(&[]).unwrap().spans().unwrap().is_empty());
        for (row, want) in [
            ("5-3", "ends (3) before it starts (5)"),
            ("x-3", "the start `x`"),
            ("1-2,3-4", "one segment per row"),
        ] {
            let e = form(&[("segment", row)]).unwrap().spans().unwrap_err();
            assert!(matches!(e, ServeError::BadRequest(_)), "{row}");
            assert!(e.to_string().contains(want), "{row}: {e}");
        }
        let e = form(&[("segment", "1-5"), ("segment", "4-8")])
            .unwrap()
            .spans()
            .unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
        assert!(form(&[("reviewer", "x".repeat(101).as_str())]).is_err());
        assert_eq!(form(&[("reviewer", " ana ")]).unwrap().reviewer, "ana");
    }

    #[test]
    fn only_local_files_are_played() {
        assert_eq!(
            local_path("/v/a.mp4").unwrap(),
            std::path::Path::new("/v/a.mp4")
        );
        assert_eq!(
            local_path("file:///v/a.mp4").unwrap(),
            std::path::Path::new("/v/a.mp4")
        );
        assert!(
            local_path("s3://bucket/a.mp4")
                .unwrap_err()
                .contains("local files only")
        );
    }
}
