//! Helpers for tests of the node agent against real parts, for this crate's tests and for
//! products that test their own compositions.
//!
//! [`docker_or_skip`] finds the local Docker daemon: a test without one is skipped with a
//! printed reason, unless [`REQUIRE_DOCKER_ENV`] is `1` (CI sets it) and the test fails
//! instead. [`busybox_image`] builds an image `FROM scratch` around the host's static busybox
//! (no registry can be reached), [`unique_pod`] gives pods that parallel tests cannot confuse,
//! and [`remove_node_objects`] cleans up everything a test's runtime created.

mod docker;

pub use self::docker::{
    BUSYBOX_APPLETS, BUSYBOX_IMAGE, REQUIRE_DOCKER_ENV, busybox_image, docker_or_skip, remove_node_objects,
    unique_name, unique_pod,
};
