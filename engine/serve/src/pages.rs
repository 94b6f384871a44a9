//! Pages from minijinja templates with HTML auto-escaping: one layout, one
//! stylesheet and one script, all compiled into the binary, so a page
//! works with no internet.

use crate::error::{Result, ServeError};
use minijinja::value::{Serde, Value};
use minijinja::{Environment, context};
use serde::Serialize;

pub const STYLE_CSS: &str = include_str!("../assets/style.css");
pub const APP_JS: &str = include_str!("../assets/app.js");

const TEMPLATES: [(&str, &str); 13] = [
    ("layout.html", include_str!("../templates/layout.html")),
    ("runs.html", include_str!("../templates/runs.html")),
    ("run.html", include_str!("../templates/run.html")),
    ("runhead.html", include_str!("../templates/runhead.html")),
    ("dag.html", include_str!("../templates/dag.html")),
    ("timeline.html", include_str!("../templates/timeline.html")),
    ("tasks.html", include_str!("../templates/tasks.html")),
    ("task.html", include_str!("../templates/task.html")),
    ("artifact.html", include_str!("../templates/artifact.html")),
    ("refs.html", include_str!("../templates/refs.html")),
    ("compare.html", include_str!("../templates/compare.html")),
    ("review.html", include_str!("../templates/review.html")),
    (
        "review_video.html",
        include_str!("../templates/review_video.html"),
    ),
];

/// The template set; `.html` names turn on auto-escaping.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, text) in TEMPLATES {
        // The templates ship with the binary; a test renders each one.
        if let Err(e) = env.add_template(name, text) {
            panic!("template `{name}` does not parse: {e:#}");
        }
    }
    env
}

/// What every page's layout needs besides its own data.
#[derive(Debug, Serialize, Clone)]
pub struct Common {
    pub store: String,
    pub allow_write: bool,
    pub csrf: String,
}

pub fn render<T: Serialize>(
    env: &Environment<'static>,
    name: &str,
    common: &Common,
    page: &T,
) -> Result<String> {
    let ctx = context! {
        page => Value::from(Serde(page)),
        store => &common.store,
        allow_write => common.allow_write,
        csrf => &common.csrf,
    };
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| {
            let mut reason = format!("{e:#}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason.push_str(&format!("\ncaused by: {s:#}"));
                source = s.source();
            }
            ServeError::Render {
                page: name.into(),
                reason,
            }
        })
}
