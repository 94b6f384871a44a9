//! Ad-hoc read-only SELECTs with their rows as JSON objects.
//!
//! Parameters are positional (`$1`, `$2`, ... in both backends) or named
//! (`:league`, rewritten to positional by [`bind_named`]). JSON strings bind
//! as text, integers as 64-bit integers, other numbers as doubles, booleans
//! as booleans and `null` as NULL.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sqlx::{Column, Decode, Row, TypeInfo, ValueRef};

use crate::db::{Catalog, Pool};
use crate::error::{CatalogError, Result};

/// A result: column names in order and the rows as JSON objects. A column
/// name repeated by a join gets a suffix (`id`, `id_2`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Map<String, Value>>,
}

impl Catalog {
    /// Runs a read-only `sql` with positional `$N` parameters; rows as JSON objects.
    pub async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Map<String, Value>>> {
        Ok(self.query_table(sql, params).await?.rows)
    }

    /// Runs a read-only `sql` with named `:name` parameters.
    pub async fn query_named(&self, sql: &str, params: &BTreeMap<String, Value>) -> Result<Table> {
        let (sql, values) = bind_named(sql, params)?;
        self.query_table(&sql, &values).await
    }

    /// Like [`Catalog::query`], with the column order. Exactly one
    /// statement, run read-only (a read-only SQLite connection, a
    /// PostgreSQL `READ ONLY` transaction): writes fail with the database's
    /// message.
    pub async fn query_table(&self, sql: &str, params: &[Value]) -> Result<Table> {
        let n = count_statements(sql);
        if n != 1 {
            return Err(CatalogError::Params {
                sql: sql.trim().into(),
                message: if n == 0 {
                    "the query is empty; give one SELECT".into()
                } else {
                    format!(
                        "the query has {n} statements; a catalog query runs exactly one read-only statement (split it, and drop the `;` between them)"
                    )
                },
            });
        }
        for (i, v) in params.iter().enumerate() {
            if v.is_array() || v.is_object() {
                return Err(CatalogError::Params {
                    sql: sql.trim().into(),
                    message: format!(
                        "parameter ${} is a JSON {}; pass a string, number, boolean or null",
                        i + 1,
                        if v.is_array() { "array" } else { "object" }
                    ),
                });
            }
        }
        let err = |e| self.sql_err(sql, e);
        match &self.pool {
            Pool::Sqlite(_) if self.readonly.is_some() => {
                let ro = self.readonly.as_ref().expect("checked above");
                let rows = bind_all(sqlx::query(sql), params)
                    .fetch_all(ro)
                    .await
                    .map_err(err)?;
                self.to_table(sql, &rows, sqlite_json)
            }
            Pool::Sqlite(p) => {
                let mut conn = p.acquire().await.map_err(err)?;
                sqlx::query("PRAGMA query_only = ON")
                    .execute(&mut *conn)
                    .await
                    .map_err(err)?;
                let rows = bind_all(sqlx::query(sql), params)
                    .fetch_all(&mut *conn)
                    .await;
                let reset = sqlx::query("PRAGMA query_only = OFF")
                    .execute(&mut *conn)
                    .await;
                let rows = rows.map_err(err)?;
                reset.map_err(err)?;
                self.to_table(sql, &rows, sqlite_json)
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await.map_err(err)?;
                sqlx::query("SET TRANSACTION READ ONLY")
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                let rows = bind_all(sqlx::query(sql), params)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.rollback().await.map_err(err)?;
                self.to_table(sql, &rows, pg_json)
            }
        }
    }

    fn to_table<R: Row>(
        &self,
        sql: &str,
        rows: &[R],
        convert: fn(&R, usize) -> Converted,
    ) -> Result<Table> {
        let Some(first) = rows.first() else {
            return Ok(Table::default());
        };
        let mut columns: Vec<String> = vec![];
        for c in first.columns() {
            let mut name = c.name().to_string();
            let mut n = 1;
            while columns.contains(&name) {
                n += 1;
                name = format!("{}_{n}", c.name());
            }
            columns.push(name);
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut obj = Map::new();
            for (i, name) in columns.iter().enumerate() {
                let v = convert(row, i).map_err(|(type_name, message)| CatalogError::Decode {
                    url: self.url.clone(),
                    sql: sql.trim().into(),
                    column: name.clone(),
                    type_name,
                    message,
                })?;
                obj.insert(name.clone(), v);
            }
            out.push(obj);
        }
        Ok(Table { columns, rows: out })
    }
}

/// How many statements `sql` holds: `;` outside quotes and comments
/// separates them, and a part with only blanks and comments does not count.
/// (A `;` inside a PostgreSQL `$$` string counts as a separator: such a
/// query is refused, never run as two.)
pub fn count_statements(sql: &str) -> usize {
    let chars: Vec<char> = sql.chars().collect();
    let (mut count, mut has_code, mut i) = (0, false, 0);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' | '"' | '`' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .map(|p| i + 1 + p)
                    .unwrap_or(chars.len() - 1);
                has_code = true;
                i = end + 1;
            }
            '-' if next == Some('-') => {
                i = chars[i..]
                    .iter()
                    .position(|&x| x == '\n')
                    .map(|p| i + p)
                    .unwrap_or(chars.len());
            }
            '/' if next == Some('*') => {
                i = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                    .map(|j| j + 2)
                    .unwrap_or(chars.len());
            }
            ';' => {
                count += usize::from(has_code);
                has_code = false;
                i += 1;
            }
            c => {
                has_code |= !c.is_whitespace();
                i += 1;
            }
        }
    }
    count + usize::from(has_code)
}

fn bind_all<'q, DB>(
    mut q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    params: &'q [Value],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    for<'a> Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> f64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    for v in params {
        q = match v {
            Value::Null => q.bind(None::<String>),
            Value::Bool(b) => q.bind(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => q.bind(i),
                None => q.bind(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => q.bind(s.as_str()),
            // Rejected before binding.
            Value::Array(_) | Value::Object(_) => q.bind(None::<String>),
        };
    }
    q
}

type Converted = std::result::Result<Value, (String, String)>;

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn hex(bytes: &[u8]) -> Value {
    Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn sqlite_json(row: &sqlx::sqlite::SqliteRow, i: usize) -> Converted {
    use sqlx::Sqlite;
    let raw = row
        .try_get_raw(i)
        .map_err(|e| ("?".to_string(), e.to_string()))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // The storage class of this value, not the column's declared type.
    let ty = raw.type_info().name().to_string();
    let fail = |e: sqlx::error::BoxDynError| (ty.clone(), e.to_string());
    Ok(match ty.as_str() {
        "INTEGER" | "BOOLEAN" => Value::from(<i64 as Decode<Sqlite>>::decode(raw).map_err(fail)?),
        "REAL" => float(<f64 as Decode<Sqlite>>::decode(raw).map_err(fail)?),
        "BLOB" => hex(<&[u8] as Decode<Sqlite>>::decode(raw).map_err(fail)?),
        _ => Value::String(<String as Decode<Sqlite>>::decode(raw).map_err(fail)?),
    })
}

fn pg_json(row: &sqlx::postgres::PgRow, i: usize) -> Converted {
    use sqlx::Postgres;
    let raw = row
        .try_get_raw(i)
        .map_err(|e| ("?".to_string(), e.to_string()))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = raw.type_info().name().to_string();
    let fail = |e: sqlx::error::BoxDynError| (ty.clone(), e.to_string());
    let bytes = || raw.as_bytes().map_err(fail);
    Ok(match ty.as_str() {
        "BOOL" => Value::Bool(<bool as Decode<Postgres>>::decode(raw).map_err(fail)?),
        "INT2" => Value::from(<i16 as Decode<Postgres>>::decode(raw).map_err(fail)?),
        "INT4" => Value::from(<i32 as Decode<Postgres>>::decode(raw).map_err(fail)?),
        "INT8" => Value::from(<i64 as Decode<Postgres>>::decode(raw).map_err(fail)?),
        "OID" => Value::from(u32::from_be_bytes(
            bytes()?
                .try_into()
                .map_err(|_| (ty.clone(), "bad OID".into()))?,
        )),
        "FLOAT4" => float(<f32 as Decode<Postgres>>::decode(raw).map_err(fail)? as f64),
        "FLOAT8" => float(<f64 as Decode<Postgres>>::decode(raw).map_err(fail)?),
        "NUMERIC" => {
            pg_numeric(bytes()?).ok_or_else(|| (ty.clone(), "malformed NUMERIC".into()))?
        }
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" | "\"CHAR\"" => {
            Value::String(<String as Decode<Postgres>>::decode(raw).map_err(fail)?)
        }
        "JSON" | "JSONB" => {
            <sqlx::types::Json<Value> as Decode<Postgres>>::decode(raw)
                .map_err(fail)?
                .0
        }
        "BYTEA" => hex(bytes()?),
        "TIMESTAMP" | "TIMESTAMPTZ" => {
            let b: [u8; 8] = bytes()?
                .try_into()
                .map_err(|_| (ty.clone(), "bad timestamp".into()))?;
            pg_timestamp(i64::from_be_bytes(b))
                .ok_or_else(|| (ty.clone(), "timestamp out of range".into()))?
        }
        "DATE" => {
            let b: [u8; 4] = bytes()?
                .try_into()
                .map_err(|_| (ty.clone(), "bad date".into()))?;
            pg_date(i32::from_be_bytes(b))
                .ok_or_else(|| (ty.clone(), "date out of range".into()))?
        }
        _ => {
            return Err((
                ty,
                "the catalog cannot turn this type into JSON; cast the column in the SQL, e.g. `col::text` or `col::float8`".into(),
            ));
        }
    })
}

/// PostgreSQL's binary NUMERIC: ndigits, weight, sign, dscale, then base-10000 digits.
fn pg_numeric(b: &[u8]) -> Option<Value> {
    let word = |i: usize| b.get(i..i + 2).map(|s| u16::from_be_bytes([s[0], s[1]]));
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i32;
    let sign = word(4)?;
    let dscale = word(6)?;
    if sign == 0xC000 {
        return Some(Value::Null); // NaN
    }
    let mut v = 0f64;
    for d in 0..ndigits {
        v += word(8 + 2 * d)? as f64 * 10000f64.powi(weight - d as i32);
    }
    if sign == 0x4000 {
        v = -v;
    }
    if dscale == 0 && v.abs() < 9.0e15 {
        return Some(Value::from(v as i64));
    }
    Some(float(v))
}

const PG_EPOCH_UNIX_S: i64 = 946_684_800;

fn pg_timestamp(micros: i64) -> Option<Value> {
    let nanos = (micros as i128 + PG_EPOCH_UNIX_S as i128 * 1_000_000) * 1000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    Some(Value::String(crate::db::rfc3339(t)))
}

fn pg_date(days: i32) -> Option<Value> {
    let t =
        time::OffsetDateTime::from_unix_timestamp(PG_EPOCH_UNIX_S + days as i64 * 86_400).ok()?;
    Some(Value::String(format!(
        "{:04}-{:02}-{:02}",
        t.year(),
        u8::from(t.month()),
        t.day()
    )))
}

/// Rewrites `:name` placeholders to `$1`, `$2`, ... and returns the values
/// in that order. Quoted strings, quoted identifiers, comments and
/// PostgreSQL `::type` casts are left alone. A placeholder without a value,
/// or a value no placeholder uses, is an error (it is usually a typo).
pub fn bind_named(sql: &str, params: &BTreeMap<String, Value>) -> Result<(String, Vec<Value>)> {
    let err = |message: String| CatalogError::Params {
        sql: sql.trim().into(),
        message,
    };
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut order: Vec<String> = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' | '"' => {
                // Copy through the closing quote ('' and "" escape themselves).
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .map(|p| i + 1 + p)
                    .unwrap_or(chars.len() - 1);
                out.extend(&chars[i..=end]);
                i = end + 1;
            }
            '-' if next == Some('-') => {
                let end = chars[i..]
                    .iter()
                    .position(|&x| x == '\n')
                    .map(|p| i + p)
                    .unwrap_or(chars.len());
                out.extend(&chars[i..end]);
                i = end;
            }
            '/' if next == Some('*') => {
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                    .map(|j| j + 2)
                    .unwrap_or(chars.len());
                out.extend(&chars[i..end]);
                i = end;
            }
            ':' if next == Some(':') => {
                out.push_str("::");
                i += 2;
            }
            ':' if next.is_some_and(|n| n.is_ascii_alphabetic() || n == '_') => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|x| !(x.is_ascii_alphanumeric() || *x == '_'))
                    .map(|p| i + 1 + p)
                    .unwrap_or(chars.len());
                let name: String = chars[i + 1..end].iter().collect();
                if !params.contains_key(&name) {
                    let known: Vec<String> = params.keys().map(|k| format!("`{k}`")).collect();
                    return Err(err(format!(
                        "`:{name}` has no value; add `{name}` to the params (given: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
                let n = match order.iter().position(|o| *o == name) {
                    Some(p) => p + 1,
                    None => {
                        order.push(name);
                        order.len()
                    }
                };
                out.push_str(&format!("${n}"));
                i = end;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    if let Some(unused) = params.keys().find(|k| !order.contains(k)) {
        return Err(err(format!(
            "param `{unused}` is not used in the SQL; refer to it as `:{unused}` or remove it"
        )));
    }
    let values = order.iter().map(|n| params[n].clone()).collect();
    Ok((out, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_parameters_become_positional() {
        let (sql, vals) = bind_named(
            "SELECT ':no', \"a:b\", x::text FROM v -- :c\nWHERE a = :league AND b > :min /* :d */ AND c = :league",
            &params(json!({"league": "x", "min": 3})),
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT ':no', \"a:b\", x::text FROM v -- :c\nWHERE a = $1 AND b > $2 /* :d */ AND c = $1"
        );
        assert_eq!(vals, vec![json!("x"), json!(3)]);
    }

    #[test]
    fn missing_and_unused_parameters_are_errors() {
        let e = bind_named("SELECT :a", &params(json!({})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`:a` has no value; add `a` to the params (given: none)"),
            "{e}"
        );
        let e = bind_named("SELECT :a", &params(json!({"a": 1, "b": 2})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("param `b` is not used in the SQL"), "{e}");
    }

    #[test]
    fn statements_are_counted_outside_quotes_and_comments() {
        assert_eq!(count_statements("SELECT 1"), 1);
        assert_eq!(count_statements("  SELECT 1 ;  -- done\n"), 1);
        assert_eq!(
            count_statements("SELECT ';' AS a, \"x;y\" /* ; */ FROM t"),
            1
        );
        assert_eq!(
            count_statements("SELECT 1; PRAGMA query_only=OFF; CREATE TABLE t(x)"),
            3
        );
        assert_eq!(count_statements("SELECT 1; -- x\n DELETE FROM t"), 2);
        assert_eq!(count_statements(" ; -- nothing"), 0);
    }

    #[test]
    fn numeric_decodes() {
        // 12345.67: ndigits 3, weight 1, sign 0, dscale 2, digits 1 2345 6700
        let b = [0, 3, 0, 1, 0, 0, 0, 2, 0, 1, 0x09, 0x29, 0x1a, 0x2c];
        assert_eq!(pg_numeric(&b), Some(json!(12345.67)));
        let b = [0, 1, 0, 0, 0x40, 0, 0, 0, 0, 7];
        assert_eq!(pg_numeric(&b), Some(json!(-7)));
    }
}
