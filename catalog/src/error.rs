//! Errors of the catalog. Every message names the database (password
//! hidden), the file or the SQL, and says what to do.

use std::path::PathBuf;

/// What went wrong in a catalog call.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The URL is neither a path, `sqlite://PATH` nor `postgres://...`.
    #[error(
        "Failed to open the catalog `{url}`: unsupported URL; use a file path, `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`"
    )]
    BadUrl {
        /// The URL as given.
        url: String,
    },
    /// The SQLite file's folder does not exist.
    #[error(
        "Failed to open the catalog `{url}`: the folder `{}` does not exist; create it (`mkdir -p {}`) or give a catalog in an existing folder (`--db`, `--catalog` or `ENGINE_CATALOG`)",
        dir.display(),
        dir.display()
    )]
    MissingFolder {
        /// The URL as given.
        url: String,
        /// The missing folder.
        dir: PathBuf,
    },
    /// The database could not be opened or reached.
    #[error("Failed to open the catalog `{url}`: {source}; {hint}")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// What to check.
        hint: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be created or upgraded.
    #[error(
        "Failed to migrate the catalog `{url}`: {source}; the database may belong to another program or a newer catalog version"
    )]
    Migrate {
        /// The URL, password hidden.
        url: String,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A statement failed; `message` is the database's own.
    #[error("Failed to run SQL on the catalog `{url}`: {message}\n  SQL: {sql}")]
    Sql {
        /// The URL, password hidden.
        url: String,
        /// The statement, as sent.
        sql: String,
        /// The database's message.
        message: String,
    },
    /// A result column has a type the catalog cannot turn into JSON.
    #[error(
        "Failed to read column `{column}` of type `{type_name}` from the catalog `{url}`: {message}\n  SQL: {sql}"
    )]
    Decode {
        /// The URL, password hidden.
        url: String,
        /// The statement.
        sql: String,
        /// The column.
        column: String,
        /// The database's type name.
        type_name: String,
        /// What to do.
        message: String,
    },
    /// A query parameter is missing, unused or of an unsupported kind.
    #[error("Failed to bind the query parameters: {message}\n  SQL: {sql}")]
    Params {
        /// The statement.
        sql: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A file or folder could not be read.
    #[error("Failed to {op} `{}`: {source}", path.display())]
    Io {
        /// What was being done: `read`, `list`, ...
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A call's arguments do not make sense (an unknown video, a `missed`
    /// review without a span, ...).
    #[error("{0}")]
    Invalid(String),
    /// A write lost to an earlier one: the review entry a verdict was for
    /// was closed by another reviewer first.
    #[error("{0}")]
    Conflict(String),
}

/// The catalog's result type.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// The URL with any password replaced by `***`, for messages: in the
/// user part (`user:PASSWORD@host`) and in query parameters
/// (`?password=...`, `&sslpassword=...`).
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_string(),
            },
            None => base.to_string(),
        },
        None => base.to_string(),
    };
    if let Some(q) = query {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://engine:secret@db:5432/x"),
            "postgres://engine:***@db:5432/x"
        );
        assert_eq!(redact("postgres://engine@db/x"), "postgres://engine@db/x");
        assert_eq!(
            redact("sqlite://.engine/catalog.db"),
            "sqlite://.engine/catalog.db"
        );
        assert_eq!(
            redact("postgres://db/x?user=engine&password=secret&sslmode=require"),
            "postgres://db/x?user=engine&password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://u:pw@db/x?sslpassword=k"),
            "postgres://u:***@db/x?sslpassword=***"
        );
    }
}
