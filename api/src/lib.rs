//! Flotilla's API server (to come): the Kubernetes REST dialect over HTTP (discovery, CRUD,
//! patch, watch, subresources, Table output), authentication, RBAC and admission, and the
//! remote client. It sees storage only through `flotilla_core`'s `Store` trait.
