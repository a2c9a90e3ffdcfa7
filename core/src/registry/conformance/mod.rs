//! The registry conformance suite: Kubernetes object semantics, checked over any
//! [`Store`](crate::store::Store).
//!
//! Each case is a public async function taking a fresh [`Registry`](super::Registry) over the
//! store under test, grouped by area: [`crud`] (create, update, status, patch, delete) and
//! [`read`] (list, pagination, selectors, watch), again with watch caches enabled, and
//! [`cache`] (the watch cache's window, slow watchers, bookmarks).
//! [`registry_conformance_tests!`] expands to
//! one `#[test]` per case, the way [`store_conformance_tests!`](crate::store_conformance_tests)
//! does for the store suite, and uses the same runtime and timeouts.
//!
//! ```no_run
//! use flotilla_core::store::MemStore;
//!
//! async fn new_store() -> MemStore {
//!     MemStore::new()
//! }
//!
//! flotilla_core::registry_conformance_tests!(new_store);
//! # fn main() {}
//! ```

pub mod cache;
pub mod crud;
pub mod read;
mod support;

use std::sync::Arc;

pub use support::Game;

use super::Registry;
use crate::object::KindRegistry;
use crate::store::Store;

/// A registry of the built-in kinds and the test kind [`Game`] over `store`.
pub fn registry_over(store: Arc<dyn Store>) -> Registry {
    let mut kinds = KindRegistry::builtin();
    kinds.register::<Game>().expect("the test kind is not built in");
    Registry::new(store, kinds)
}

/// How the cases' registry is set up.
#[doc(hidden)]
pub async fn setup(store: Arc<dyn Store>, cached: bool) -> Registry {
    let r = registry_over(store);
    if cached {
        use crate::object::Resource;
        let config = crate::registry::WatchCacheConfig { capacity: 256, watcher_buffer: 64 };
        for t in [
            k8s_openapi::api::core::v1::Namespace::TYPE,
            k8s_openapi::api::core::v1::Pod::TYPE,
            k8s_openapi::api::apps::v1::Deployment::TYPE,
            Game::TYPE,
        ] {
            r.enable_watch_cache(&t, config).await.expect("the watch cache starts");
        }
    }
    r
}

/// Expands to one `#[test]` per registry conformance case, over stores from a factory.
///
/// `registry_conformance_tests!(new_store)` or `registry_conformance_tests!(new_store,
/// shutdown)`, with the same meaning as for
/// [`store_conformance_tests!`](crate::store_conformance_tests).
#[macro_export]
macro_rules! registry_conformance_tests {
    ($new_store:expr $(,)?) => {
        $crate::registry_conformance_tests!($new_store, $crate::store::conformance::drop_store);
    };
    ($new_store:expr, $shutdown:expr $(,)?) => {
        $crate::__registry_conformance_area!(
            crud,
            crud,
            false,
            $new_store,
            $shutdown,
            [
                create_sets_system_fields_and_defaults,
                generate_name_gives_distinct_names,
                create_needs_an_open_namespace,
                invalid_objects_report_every_field,
                unknown_fields_warn_or_fail,
                update_checks_resource_version,
                generation_follows_spec_changes,
                status_subresource_is_separate,
                patches_of_every_type,
                finalizers_defer_deletion,
                pod_grace_period_defers_deletion,
                propagation_policies_add_finalizers,
                delete_preconditions,
                namespace_terminates_until_finalized,
                binding_assigns_a_pod_once,
                delete_collection_follows_selectors,
                server_side_apply_tracks_owners,
                user_kinds_work_like_builtin_ones,
            ]
        );
        $crate::__registry_conformance_area!(
            read,
            read,
            false,
            $new_store,
            $shutdown,
            [
                list_filters_by_label_and_field,
                list_pages_form_one_snapshot,
                list_at_exact_resource_version,
                watch_replays_changes_after_a_resource_version,
                watch_without_resource_version_starts_with_state,
                watch_follows_selector_transitions,
                watch_from_compacted_revision_is_expired,
            ]
        );
        $crate::__registry_conformance_area!(
            cached_crud,
            crud,
            true,
            $new_store,
            $shutdown,
            [
                create_sets_system_fields_and_defaults,
                finalizers_defer_deletion,
                patches_of_every_type,
                status_subresource_is_separate,
                user_kinds_work_like_builtin_ones,
            ]
        );
        $crate::__registry_conformance_area!(
            cached_read,
            read,
            true,
            $new_store,
            $shutdown,
            [
                list_filters_by_label_and_field,
                list_pages_form_one_snapshot,
                list_at_exact_resource_version,
                watch_replays_changes_after_a_resource_version,
                watch_without_resource_version_starts_with_state,
                watch_follows_selector_transitions,
            ]
        );
        $crate::__registry_conformance_area!(
            cache,
            cache,
            false,
            $new_store,
            $shutdown,
            [
                cached_list_matches_the_store,
                watch_before_the_window_is_expired,
                slow_watcher_is_dropped_and_resumes,
                bookmarks_carry_progress,
            ]
        );
    };
}

/// One module of tests for one area; used by [`registry_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __registry_conformance_area {
    ($module:ident, $area:ident, $cached:expr, $new_store:expr, $shutdown:expr, [$($case:ident),+ $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[test]
                fn $case() {
                    $crate::store::conformance::block_on(async {
                        let name = concat!("registry::", stringify!($area), "::", stringify!($case));
                        let store = $crate::store::conformance::setup(name, "creating the store", ($new_store)()).await;
                        let store = ::std::sync::Arc::new(store);
                        let registry = $crate::store::conformance::setup(
                            name,
                            "setting up the registry",
                            $crate::registry::conformance::setup(store.clone(), $cached),
                        )
                        .await;
                        let handle = registry.clone();
                        $crate::store::conformance::run_case(
                            name,
                            $crate::registry::conformance::$area::$case(registry),
                        )
                        .await;
                        handle.shutdown().await;
                        drop(handle);
                        if let Ok(store) = ::std::sync::Arc::try_unwrap(store) {
                            $crate::store::conformance::setup(name, "shutting the store down", ($shutdown)(store)).await;
                        }
                    });
                }
            )+
        }
    };
}
