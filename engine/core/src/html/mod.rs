//! Self-contained HTML pages (a run's timeline, the dataset report, the
//! model report): minijinja templates that extend one layout with the
//! stylesheet inlined, so a page is one file that opens with no network.
//! Templates are named `*.html`, which turns on HTML auto-escaping: text
//! from specs and data (task, league, trial names) can never become markup.

use minijinja::{Environment, UndefinedBehavior, Value, context};
use serde::Serialize;

const LAYOUT: &str = include_str!("layout.html");
const STYLE_CSS: &str = include_str!("style.css");

/// The environment every page renders in: `layout.html` to extend (with a
/// `head` block for a page's own styles), the shared stylesheet as
/// `stylesheet`, and the `fixed` filter. Add a page's templates to it,
/// named `*.html` so they are auto-escaped.
pub fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Readable templates without stray blank lines around `{% %}` tags.
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()?;
    env.set_syntax(syntax);
    env.add_filter("fixed", fixed);
    env.add_template("layout.html", LAYOUT)?;
    // Our own file, not data: safe to insert unescaped.
    env.add_global(
        "stylesheet",
        Value::from_safe_string(STYLE_CSS.trim_end().to_string()),
    );
    Ok(env)
}

/// Renders `source` (a template that extends `layout.html`) with `page` as
/// `page`. `name` must end in `.html` for auto-escaping.
pub fn render<T: Serialize>(
    name: &str,
    source: &str,
    page: &T,
) -> Result<String, minijinja::Error> {
    debug_assert!(
        name.ends_with(".html"),
        "`{name}` would not be auto-escaped"
    );
    let mut env = environment()?;
    env.add_template(name, source)?;
    let ctx = context! { page => Value::from(minijinja::value::Serde(page)) };
    env.get_template(name)?.render(ctx)
}

/// `{{ x | fixed(2) }}`: a number with that many decimals, as Rust's
/// `{:.2}` writes it (SVG coordinates, seconds, percentages).
fn fixed(v: f64, digits: usize) -> String {
    format!("{v:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "{% extends \"layout.html\" %}{% block title %}{{ page.name }}{% endblock %}\
{% block content %}<p>{{ page.name }} {{ page.x | fixed(1) }}</p>{% endblock %}";

    #[derive(Serialize)]
    struct P {
        name: &'static str,
        x: f64,
    }

    #[test]
    fn pages_escape_text_and_inline_the_stylesheet() {
        let html = render(
            "t.html",
            PAGE,
            &P {
                name: "<script>a & b",
                x: 2.26,
            },
        )
        .unwrap();
        assert!(
            html.contains("<p>&lt;script&gt;a &amp; b 2.3</p>"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("<title>&lt;script&gt;a &amp; b</title>"));
        assert!(html.contains("border-collapse") && !html.contains("<link"));
    }
}
