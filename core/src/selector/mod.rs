//! Label and field selectors, with Kubernetes' syntax, semantics and messages.
//!
//! A [`LabelSelector`] is parsed from its string form (`app=web,env in (prod, staging),!canary`)
//! or converted from an API `LabelSelector` (`matchLabels` and `matchExpressions`) with
//! [`LabelSelector::from_k8s`]; it matches an object's labels and prints back canonically.
//! Keys and values are checked with the [`validation`](crate::validation) rules.
//!
//! A [`FieldSelector`] (`metadata.name=web,spec.nodeName!=`) compares fields of an object for
//! equality; which fields a kind supports is the registry's business, see
//! [`FieldSelector::check_supported`].
//!
//! Both have an [`everything`](LabelSelector::everything) selector (no requirement) and a
//! [`nothing`](LabelSelector::nothing) selector; an absent API label selector selects nothing
//! while an empty one selects everything.
//!
//! Parse failures are [`SelectorError`]s naming the input, the character position and what was
//! expected there. Converting an API label selector reports field errors instead (an
//! [`ErrorList`](crate::validation::ErrorList) at paths like
//! `spec.selector.matchExpressions[1].values`), ready to join an object's validation errors.

mod api;
mod error;
mod field;
mod label;
mod lexer;
mod parser;

#[cfg(test)]
mod proptests;

pub use api::validate_label_selector;
pub use error::{Result, SelectorError};
pub use field::{FieldOperator, FieldRequirement, FieldSelector, escape_value, unescape_value};
pub use label::{LabelSelector, Operator, Requirement};
