//! ResourceQuota: validation of what Flotilla counts (see [`crate::quota`]) and its columns.

use k8s_openapi::api::core::v1::ResourceQuota;
use serde_json::Value;

use super::json;
use crate::object::Kind;
use crate::object::table::{self, Column, cell};
use crate::quantity::Quantity;
use crate::quota::names;
use crate::validation::{ErrorList, FieldError, FieldPath};

const COLUMNS: &[Column] = &[
    table::AGE,
    Column::text("Request", "Used and hard amounts of everything but limits."),
    Column::text("Limit", "Used and hard amounts of limits."),
];

impl Kind for ResourceQuota {
    fn validate(&self, _old: Option<&Self>) -> ErrorList {
        let mut errs = ErrorList::default();
        let spec = self.spec.clone().unwrap_or_default();
        let path = FieldPath::new("spec");
        let (scopes, scope_errs) = names::scopes(&spec, &path);
        errs.extend(scope_errs);
        for (name, q) in spec.hard.iter().flatten() {
            let p = path.child("hard").key(name);
            match Quantity::try_from(q) {
                Ok(q) if q.is_negative() => errs.push(FieldError::invalid(
                    p.clone(),
                    json(q.to_string()),
                    "must be greater than or equal to 0",
                )),
                Ok(_) => {}
                Err(e) => errs.push(FieldError::invalid(p.clone(), json(q.0.clone()), e.to_string())),
            }
            match names::parse(name) {
                Ok(t) if !scopes.is_empty() && !t.is_pod_resource() => errs.push(FieldError::invalid(
                    p,
                    json(name.clone()),
                    "unsupported scope applied to resource: scoped quotas count pods and their requests and limits only",
                )),
                Ok(_) => {}
                Err(why) => errs.push(FieldError::invalid(p, json(name.clone()), &why)),
            }
        }
        errs
    }

    fn printer_columns() -> &'static [Column] {
        COLUMNS
    }

    fn printer_cells(&self) -> Vec<Value> {
        let status = self.status.clone().unwrap_or_default();
        let (mut request, mut limit) = (Vec::new(), Vec::new());
        let used = status.used.unwrap_or_default();
        for (name, hard) in status.hard.unwrap_or_default() {
            let u = used.get(&name).map(|q| q.0.clone()).unwrap_or_else(|| "0".into());
            let entry = format!("{name}: {u}/{}", hard.0);
            if name.starts_with("limits.") { limit.push(entry) } else { request.push(entry) }
        }
        vec![Value::Null, cell(request.join(", ")), cell(limit.join(", "))]
    }
}
