//! Printer columns: what `kubectl get` shows for each kind (the server's Table form).
//!
//! Every kind gets `Name` first and `Age` after its default-view columns (before the `-o wide`
//! ones); a kind adds its own columns in between
//! through [`Kind::printer_columns`](super::Kind::printer_columns) and
//! [`Kind::printer_cells`](super::Kind::printer_cells).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

/// One column of a kind's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header (`Ready`).
    pub name: &'static str,
    /// OpenAPI type of the cells: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 for the default view; 1 for `-o wide` only.
    pub priority: i32,
}

impl Column {
    /// A string column in the default view.
    pub const fn text(name: &'static str, description: &'static str) -> Self {
        Column { name, type_: "string", description, priority: 0 }
    }

    /// A string column shown only by `-o wide`.
    pub const fn wide(name: &'static str, description: &'static str) -> Self {
        Column { name, type_: "string", description, priority: 1 }
    }

    /// An integer column in the default view.
    pub const fn integer(name: &'static str, description: &'static str) -> Self {
        Column { name, type_: "integer", description, priority: 0 }
    }
}

/// The first column of every table.
pub const NAME: Column = Column {
    name: "Name",
    type_: "string",
    description: "Name must be unique within a namespace.",
    priority: 0,
};

/// The last column of every table.
pub const AGE: Column =
    Column { name: "Age", type_: "string", description: "Time since the object was created.", priority: 0 };

/// kubectl's short human form of a duration: `45s`, `5m10s`, `3h`, `2d5h`, `400d`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 if s % 60 != 0 => format!("{}m{}s", s / 60, s % 60),
        120..3600 => format!("{}m", s / 60),
        3600..28800 if (s % 3600) / 60 != 0 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        3600..172800 => format!("{}h", s / 3600),
        172800..691200 if (s % 86400) / 3600 != 0 => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
        172800..31536000 => format!("{}d", s / 86400),
        _ => format!("{}y{}d", s / 31536000, (s % 31536000) / 86400),
    }
}

/// The Age cell of an object created at `created`, seen at `now`.
pub fn age(created: Option<&Time>, now: &Time) -> Value {
    match created {
        Some(c) => Value::String(human_duration(now.0.as_second() - c.0.as_second())),
        None => Value::String("<unknown>".into()),
    }
}

/// A string cell, `<none>` when empty (as kubectl prints).
pub fn cell(s: impl Into<String>) -> Value {
    let s = s.into();
    Value::String(if s.is_empty() { "<none>".into() } else { s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (130, "2m10s"),
            (600, "10m"),
            (3599, "59m"),
            (3600, "1h"),
            (3660, "1h1m"),
            (30000, "8h"),
            (172800, "2d"),
            (180000, "2d2h"),
            (864000, "10d"),
            (40000000, "1y97d"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }
}
