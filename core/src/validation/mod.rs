//! Validation with Kubernetes' rules: field paths, error lists and name checks.
//!
//! A validator walks an object with a [`FieldPath`] and collects every problem into an
//! [`ErrorList`] of [`FieldError`]s, which print exactly as Kubernetes prints them
//! (`metadata.name: Invalid value: "Foo_": a lowercase RFC 1123 subdomain must ...`) and carry the
//! `StatusCause` reason of their [`ErrorKind`].
//!
//! The name and value rules ([`is_dns1123_subdomain`], [`is_qualified_name`],
//! [`is_valid_label_value`], ...) return Kubernetes' messages, empty when the value is valid;
//! [`validate_object_name`], [`validate_labels`] and [`validate_annotations`] apply them to object
//! metadata.
//!
//! ```
//! use flotilla_core::validation::{ErrorList, FieldError, FieldPath, validate_object_name};
//!
//! let name = FieldPath::new("metadata").child("name");
//! let mut errs = ErrorList::new();
//! for msg in validate_object_name("web_1", false) {
//!     errs.push(FieldError::invalid(&name, "web_1", msg));
//! }
//! assert_eq!(errs.len(), 1);
//! assert!(errs.to_string().starts_with(r#"metadata.name: Invalid value: "web_1": a lowercase RFC 1123"#));
//! ```

mod errors;
mod meta;
mod names;
mod path;

pub use errors::{ErrorKind, ErrorList, FieldError};
pub use meta::{
    TOTAL_ANNOTATION_SIZE_LIMIT_BYTES, ValidateNameFn, name_is_dns_label, name_is_dns_subdomain,
    name_is_dns1035_label, validate_annotations, validate_label_name, validate_labels, validate_object_name,
};
pub use names::{
    DNS1035_LABEL_MAX_LENGTH, DNS1123_LABEL_MAX_LENGTH, DNS1123_SUBDOMAIN_MAX_LENGTH, LABEL_VALUE_MAX_LENGTH,
    PORT_NAME_MAX_LENGTH, QUALIFIED_NAME_MAX_LENGTH, empty_error, inclusive_range_error, is_c_identifier,
    is_config_map_key, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_env_var_name,
    is_path_segment_name, is_qualified_name, is_relaxed_env_var_name, is_valid_label_value,
    is_valid_port_name, is_valid_port_num, max_len_error, regex_error,
};
pub use path::{FieldPath, PathSegment};
