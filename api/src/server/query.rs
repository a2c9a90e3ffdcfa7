//! Query parameters: Kubernetes' names, parsed into the registry's options. A bad value is a
//! 400 that names the parameter.

use std::collections::HashMap;

use flotilla_core::registry::{
    DeleteOptions, FieldValidation, GetOptions, ListOptions, PropagationPolicy, ResourceVersionMatch,
    WriteOptions,
};

use super::{Error, Result};

/// The parsed query string of one request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Query {
    params: HashMap<String, String>,
}

impl Query {
    /// Parses a raw (percent-encoded) query string; a repeated parameter keeps its first value.
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let mut params = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            params.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Query { params }
    }

    /// A parameter's value; an empty value counts as absent, as Kubernetes treats it.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A boolean parameter: `true`/`1` or `false`/`0`. Given without a value (`?watch`,
    /// `?watch=`) it is true, as Kubernetes reads it and as authorization (`RequestInfo`) saw it.
    pub(crate) fn flag(&self, name: &str) -> Result<bool> {
        match self.params.get(name).map(String::as_str) {
            None | Some("false" | "0") => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some(other) => Err(bad(name, other, "must be true or false")),
        }
    }

    /// An integer parameter.
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>> {
        self.get(name).map(|v| v.parse::<i64>().map_err(|_| bad(name, v, "must be an integer"))).transpose()
    }

    /// Whether this GET is a watch (`watch=true`).
    pub(crate) fn is_watch(&self) -> Result<bool> {
        self.flag("watch")
    }

    /// Options of a get.
    pub(crate) fn get_options(&self) -> GetOptions {
        GetOptions { resource_version: self.get("resourceVersion").map(str::to_string) }
    }

    /// Options of a list, a watch or a deletecollection.
    pub(crate) fn list_options(&self) -> Result<ListOptions> {
        let limit = self.int("limit")?;
        if let Some(l) = limit.filter(|l| *l < 0) {
            return Err(bad("limit", &l.to_string(), "must not be negative"));
        }
        let resource_version_match = match self.get("resourceVersionMatch") {
            None => None,
            Some("NotOlderThan") => Some(ResourceVersionMatch::NotOlderThan),
            Some("Exact") => Some(ResourceVersionMatch::Exact),
            Some(other) => return Err(bad("resourceVersionMatch", other, "must be NotOlderThan or Exact")),
        };
        if resource_version_match.is_some() && self.get("resourceVersion").is_none() {
            return Err(Error::BadRequest(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
                    .into(),
            ));
        }
        Ok(ListOptions {
            label_selector: self.get("labelSelector").map(str::to_string),
            field_selector: self.get("fieldSelector").map(str::to_string),
            limit: limit.filter(|l| *l > 0),
            continue_token: self.get("continue").map(str::to_string),
            resource_version: self.get("resourceVersion").map(str::to_string),
            resource_version_match,
            allow_watch_bookmarks: self.flag("allowWatchBookmarks")?,
        })
    }

    /// `timeoutSeconds` of a watch, if given.
    pub(crate) fn timeout_seconds(&self) -> Result<Option<u64>> {
        match self.int("timeoutSeconds")? {
            Some(t) if t < 0 => Err(bad("timeoutSeconds", &t.to_string(), "must not be negative")),
            t => Ok(t.map(|t| t.unsigned_abs())),
        }
    }

    /// `dryRun`: only `All` is defined.
    pub(crate) fn dry_run(&self) -> Result<bool> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(bad("dryRun", other, "supported values: \"All\"")),
        }
    }

    /// Options of a create, update or patch.
    pub(crate) fn write_options(&self) -> Result<WriteOptions> {
        let field_validation = match self.get("fieldValidation") {
            None => FieldValidation::default(),
            Some("Strict") => FieldValidation::Strict,
            Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(bad("fieldValidation", other, "must be one of Ignore, Warn or Strict"));
            }
        };
        let field_manager = self.get("fieldManager").map(str::to_string);
        if let Some(m) = field_manager.as_ref().filter(|m| m.len() > 128 || m.chars().any(char::is_control)) {
            return Err(bad("fieldManager", m, "must be at most 128 printable characters"));
        }
        Ok(WriteOptions {
            dry_run: self.dry_run()?,
            field_validation,
            field_manager,
            force: self.flag("force")?,
        })
    }

    /// The query's part of a delete's options (`gracePeriodSeconds`, `propagationPolicy`,
    /// `orphanDependents`, `dryRun`); a DeleteOptions body may add to them.
    pub(crate) fn delete_options(&self) -> Result<DeleteOptions> {
        let propagation_policy = match self.get("propagationPolicy") {
            Some(p) => Some(parse_propagation(p).ok_or_else(|| {
                bad("propagationPolicy", p, "must be one of Orphan, Background or Foreground")
            })?),
            None => match self.get("orphanDependents") {
                Some(_) if self.flag("orphanDependents")? => Some(PropagationPolicy::Orphan),
                _ => None,
            },
        };
        Ok(DeleteOptions {
            grace_period_seconds: self.int("gracePeriodSeconds")?,
            propagation_policy,
            dry_run: self.dry_run()?,
            ..Default::default()
        })
    }
}

/// A propagation policy by its API name.
pub(crate) fn parse_propagation(p: &str) -> Option<PropagationPolicy> {
    match p {
        "Orphan" => Some(PropagationPolicy::Orphan),
        "Background" => Some(PropagationPolicy::Background),
        "Foreground" => Some(PropagationPolicy::Foreground),
        _ => None,
    }
}

fn bad(name: &str, value: &str, why: &str) -> Error {
    Error::BadRequest(format!("invalid value {value:?} for query parameter {name}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_options_use_kubernetes_names() -> Result<()> {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn1&limit=500&continue=abc\
             &resourceVersion=12&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        ));
        let o = q.list_options()?;
        assert_eq!(o.label_selector.as_deref(), Some("app=web"));
        assert_eq!(o.field_selector.as_deref(), Some("spec.nodeName=n1"));
        assert_eq!(o.limit, Some(500));
        assert_eq!(o.continue_token.as_deref(), Some("abc"));
        assert_eq!(o.resource_version.as_deref(), Some("12"));
        assert_eq!(o.resource_version_match, Some(ResourceVersionMatch::NotOlderThan));
        assert!(o.allow_watch_bookmarks);
        Ok(())
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (raw, param) in [
            ("limit=x", "limit"),
            ("limit=-1", "limit"),
            ("watch=maybe", "watch"),
            ("resourceVersionMatch=Newest&resourceVersion=1", "resourceVersionMatch"),
            ("timeoutSeconds=-5", "timeoutSeconds"),
        ] {
            let q = Query::parse(Some(raw));
            let err = q
                .list_options()
                .and_then(|_| q.is_watch())
                .and_then(|_| q.timeout_seconds())
                .map(|_| ())
                .expect_err(raw);
            assert!(err.to_string().contains(param), "{raw}: {err}");
        }
        for (raw, param) in
            [("dryRun=Some", "dryRun"), ("fieldValidation=Loud", "fieldValidation"), ("force=2", "force")]
        {
            let err = Query::parse(Some(raw)).write_options().expect_err(raw);
            assert!(err.to_string().contains(param), "{raw}: {err}");
        }
        let err = Query::parse(Some("propagationPolicy=Sideways")).delete_options().expect_err("policy");
        assert!(err.to_string().contains("propagationPolicy"), "{err}");
    }

    /// Found by `fuzz/http_request`: `?watch=` was authorized as a watch and served as a list.
    #[test]
    fn flags_without_a_value_are_true() -> Result<()> {
        for raw in ["watch", "watch=", "watch=true", "watch=1"] {
            assert!(Query::parse(Some(raw)).is_watch()?, "{raw}");
        }
        for raw in ["", "watch=false", "watch=0", "other="] {
            assert!(!Query::parse(Some(raw)).is_watch()?, "{raw}");
        }
        assert!(Query::parse(Some("force=")).write_options()?.force);
        Ok(())
    }

    #[test]
    fn write_and_delete_options() -> Result<()> {
        let w = Query::parse(Some("dryRun=All&fieldValidation=Strict&fieldManager=kubectl&force=true"))
            .write_options()?;
        assert!(w.dry_run && w.force);
        assert_eq!(w.field_validation, FieldValidation::Strict);
        assert_eq!(w.field_manager.as_deref(), Some("kubectl"));
        let d = Query::parse(Some("gracePeriodSeconds=0&orphanDependents=true")).delete_options()?;
        assert_eq!(d.grace_period_seconds, Some(0));
        assert_eq!(d.propagation_policy, Some(PropagationPolicy::Orphan));
        Ok(())
    }
}
