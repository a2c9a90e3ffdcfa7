//! The kubelet's container-log query parameters, parsed with errors that name the parameter.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::runtime::LogOptions;

/// A query parameter that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid query parameter {name}={value:?}: {why}")]
pub struct QueryError {
    /// The parameter.
    pub name: String,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

/// What a `containerLogs` request asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogQuery {
    /// Keep streaming.
    pub follow: bool,
    /// Only the last lines.
    pub tail_lines: Option<u64>,
    /// Only lines of the last seconds.
    pub since_seconds: Option<u64>,
    /// Only lines at or after this time.
    pub since_time: Option<Timestamp>,
    /// Prefix lines with their timestamp.
    pub timestamps: bool,
    /// The previous instance of the container.
    pub previous: bool,
    /// At most this many bytes.
    pub limit_bytes: Option<u64>,
}

impl LogQuery {
    /// Parses a URL query string; unknown parameters are ignored, as the kubelet does.
    pub fn parse(raw: &str) -> Result<LogQuery, QueryError> {
        let mut q = LogQuery::default();
        for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let err =
                |why: &str| QueryError { name: name.to_string(), value: value.to_string(), why: why.into() };
            let boolean = || match value.as_ref() {
                "" | "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(err("expected true or false")),
            };
            let count = || match value.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(n as u64),
                Ok(_) => Err(err("must not be negative")),
                Err(_) => Err(err("expected an integer")),
            };
            match name.as_ref() {
                "follow" => q.follow = boolean()?,
                "timestamps" => q.timestamps = boolean()?,
                "previous" => q.previous = boolean()?,
                "tailLines" => q.tail_lines = Some(count()?),
                "sinceSeconds" => match count()? {
                    0 => return Err(err("must be greater than 0")),
                    n => q.since_seconds = Some(n),
                },
                "limitBytes" => match count()? {
                    0 => return Err(err("must be greater than 0")),
                    n => q.limit_bytes = Some(n),
                },
                "sinceTime" => {
                    q.since_time = Some(value.parse().map_err(|_| err("expected an RFC 3339 time"))?);
                }
                _ => {}
            }
        }
        if q.since_seconds.is_some() && q.since_time.is_some() {
            return Err(QueryError {
                name: "sinceSeconds".into(),
                value: q.since_seconds.unwrap_or_default().to_string(),
                why: "at most one of sinceTime and sinceSeconds may be set".into(),
            });
        }
        Ok(q)
    }

    /// The runtime's options, with `sinceSeconds` counted back from `now`.
    pub fn options(&self, now: Timestamp) -> Result<LogOptions, QueryError> {
        let since = match (self.since_time, self.since_seconds) {
            (Some(t), _) => Some(t),
            (None, Some(s)) => Some(now.checked_sub(Duration::from_secs(s)).map_err(|e| QueryError {
                name: "sinceSeconds".into(),
                value: s.to_string(),
                why: e.to_string(),
            })?),
            (None, None) => None,
        };
        Ok(LogOptions {
            follow: self.follow,
            tail_lines: self.tail_lines,
            since,
            timestamps: self.timestamps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_parameter_and_names_the_bad_one() {
        let q = LogQuery::parse("follow=true&tailLines=5&timestamps=1&previous=false&limitBytes=10&x=y")
            .expect("valid query");
        assert_eq!(
            q,
            LogQuery {
                follow: true,
                tail_lines: Some(5),
                timestamps: true,
                limit_bytes: Some(10),
                ..Default::default()
            }
        );
        for (raw, name) in [
            ("follow=maybe", "follow"),
            ("tailLines=-1", "tailLines"),
            ("tailLines=ten", "tailLines"),
            ("sinceSeconds=0", "sinceSeconds"),
            ("sinceTime=yesterday", "sinceTime"),
            ("sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z", "sinceSeconds"),
        ] {
            let e = LogQuery::parse(raw).expect_err(raw);
            assert_eq!(e.name, name, "{raw}: {e}");
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn since_seconds_counts_back_from_now() {
        let now: Timestamp = "2026-12-05T10:00:00Z".parse().expect("time");
        let q = LogQuery::parse("sinceSeconds=60").expect("valid");
        let since = q.options(now).expect("options").since.expect("since");
        assert_eq!(since.to_string(), "2026-12-05T09:59:00Z");
        let t = LogQuery::parse("sinceTime=2026-12-05T08:00:00Z").expect("valid");
        assert_eq!(
            t.options(now).expect("options").since.expect("since").to_string(),
            "2026-12-05T08:00:00Z"
        );
    }
}
