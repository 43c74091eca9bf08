//! Queries written once for both databases: a statement in the SQL both speak (`$1`
//! placeholders, which SQLite reads as `?1`), its parameters and its rows as plain values.
//! The message path keeps its hand-tuned statements per database; what the API reads and
//! writes (sites, ratings, reports, searches) goes through here, so each query exists once.

use super::StoreError;

/// A parameter or a column value. Nulls are typed: PostgreSQL checks a parameter's type
/// even when it is null.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(Option<i64>),
    Text(Option<String>),
    Float(Option<f64>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}

/// One row of a result, by column position.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Val>);

impl Row {
    fn at(&self, i: usize) -> Option<&Val> {
        self.0.get(i)
    }
    /// Column `i` as an integer (a null or a text: 0).
    pub fn int(&self, i: usize) -> i64 {
        self.opt_int(i).unwrap_or(0)
    }
    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match self.at(i) {
            Some(Val::Int(v)) => *v,
            Some(Val::Float(v)) => v.map(|f| f as i64),
            _ => None,
        }
    }
    pub fn opt_float(&self, i: usize) -> Option<f64> {
        match self.at(i) {
            Some(Val::Float(v)) => *v,
            Some(Val::Int(v)) => v.map(|n| n as f64),
            _ => None,
        }
    }
    /// Column `i` as text (a null: empty).
    pub fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }
    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.at(i) {
            Some(Val::Text(v)) => v.clone(),
            _ => None,
        }
    }
}

/// A statement and its parameters.
pub type Statement = (&'static str, Vec<Val>);

pub(super) mod sqlite {
    use super::{Row, Val};
    use rusqlite::types::{ToSqlOutput, Value, ValueRef};
    use rusqlite::ToSql;

    impl ToSql for Val {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(match self {
                Val::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(*v)),
                Val::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
                Val::Float(Some(v)) => ToSqlOutput::Owned(Value::Real(*v)),
                _ => ToSqlOutput::Owned(Value::Null),
            })
        }
    }

    /// The statement as SQLite reads it.
    pub fn sql(statement: &str) -> String {
        statement.replace('$', "?")
    }

    pub fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        let n = r.as_ref().column_count();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(match r.get_ref(i)? {
                ValueRef::Null => Val::Int(None),
                ValueRef::Integer(v) => Val::Int(Some(v)),
                ValueRef::Real(v) => Val::Float(Some(v)),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Val::Text(Some(String::from_utf8_lossy(t).into_owned()))
                }
            });
        }
        Ok(Row(out))
    }
}

pub(super) mod postgres {
    use super::{Row, StoreError, Val};
    use tokio_postgres::types::{ToSql, Type};

    pub fn params(vals: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
        vals.iter()
            .map(|v| match v {
                Val::Int(x) => x as &(dyn ToSql + Sync),
                Val::Text(x) => x as &(dyn ToSql + Sync),
                Val::Float(x) => x as &(dyn ToSql + Sync),
            })
            .collect()
    }

    pub fn row(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
        let mut out = Vec::with_capacity(r.len());
        for (i, c) in r.columns().iter().enumerate() {
            out.push(match *c.type_() {
                Type::INT8 => Val::Int(r.try_get(i)?),
                Type::INT4 => Val::Int(r.try_get::<_, Option<i32>>(i)?.map(i64::from)),
                Type::INT2 => Val::Int(r.try_get::<_, Option<i16>>(i)?.map(i64::from)),
                Type::FLOAT8 => Val::Float(r.try_get(i)?),
                Type::FLOAT4 => Val::Float(r.try_get::<_, Option<f32>>(i)?.map(f64::from)),
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => Val::Text(r.try_get(i)?),
                ref t => {
                    return Err(StoreError::Other(format!(
                        "column {} has type {t}, which the shared queries do not read",
                        c.name()
                    )))
                }
            });
        }
        Ok(Row(out))
    }
}
