//! Options of registry operations, with Kubernetes' names and meanings.

/// How a get or list chooses the revision it reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResourceVersionMatch {
    /// At least the given resourceVersion (the default when one is given).
    #[default]
    NotOlderThan,
    /// Exactly the given resourceVersion.
    Exact,
}

/// Options of a get.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Unset: the latest (linearizable); `"0"`: any recent state; a number: not older than it.
    pub resource_version: Option<String>,
}

/// Options of a list, a watch or a deletecollection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// A label selector in string form (`app=web,tier in (a,b)`).
    pub label_selector: Option<String>,
    /// A field selector (`metadata.name=web,spec.nodeName=n1`).
    pub field_selector: Option<String>,
    /// At most this many items; the rest is reached with the returned continue token.
    pub limit: Option<i64>,
    /// The continue token of the previous page.
    pub continue_token: Option<String>,
    /// See [`GetOptions::resource_version`]; for a watch, the revision to resume after.
    pub resource_version: Option<String>,
    /// How `resource_version` is matched.
    pub resource_version_match: Option<ResourceVersionMatch>,
    /// Watch only: send bookmark events carrying the current resourceVersion.
    pub allow_watch_bookmarks: bool,
}

impl ListOptions {
    /// Only the selectors of these options (a full, linearizable list of what they select).
    pub fn selectors(&self) -> ListOptions {
        ListOptions {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            ..Default::default()
        }
    }
}

/// What an update or patch writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Subresource {
    /// The object; its status (for kinds with a status subresource) is kept.
    #[default]
    Main,
    /// Only the status; everything else is kept.
    Status,
    /// A namespace's `finalize` subresource: only `spec.finalizers` changes (the namespace
    /// controller empties it once the namespace's content is gone, and the namespace goes).
    Finalize,
}

/// What to do with fields the kind does not know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and report a warning for each (Kubernetes' default).
    #[default]
    Warn,
    /// Refuse the request.
    Strict,
}

/// Options of a create, update or patch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Check and return the result without storing it.
    pub dry_run: bool,
    /// Unknown-field handling.
    pub field_validation: FieldValidation,
    /// The name of the actor making the change: its changes are recorded in
    /// `metadata.managedFields`. Required for server-side apply.
    pub field_manager: Option<String>,
    /// Server-side apply only: take fields other managers own instead of failing with a
    /// conflict.
    pub force: bool,
}

/// What happens to an object's dependents when it is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropagationPolicy {
    /// Dependents are left in place (their owner reference is removed).
    Orphan,
    /// The object goes at once; the garbage collector deletes dependents afterwards.
    Background,
    /// The object stays (with a `foregroundDeletion` finalizer) until its blocking
    /// dependents are gone.
    Foreground,
}

/// A precondition on a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Precondition {
    /// The object must have this uid.
    pub uid: Option<String>,
    /// The object must be at this resourceVersion.
    pub resource_version: Option<String>,
}

/// Options of a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Seconds before the object may be removed (pods); 0 deletes at once.
    pub grace_period_seconds: Option<i64>,
    /// Dependents' fate; unset means Background.
    pub propagation_policy: Option<PropagationPolicy>,
    /// Conditions the object must meet.
    pub preconditions: Precondition,
    /// Check and return the result without storing it.
    pub dry_run: bool,
}
