//! Errors of setting up Docker (connecting, building images), and how Docker API errors
//! become the runtime's [`RuntimeError`]s.

use std::path::PathBuf;

use crate::runtime::Error as RuntimeError;

/// Errors of connecting to Docker and building the images Flotilla needs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No client could be made for the configured endpoint.
    #[error("cannot connect to docker at {host}")]
    Connect {
        /// The endpoint (`unix:///var/run/docker.sock` when not configured).
        host: String,
        /// What bollard said.
        #[source]
        source: bollard::errors::Error,
    },
    /// The daemon did not answer.
    #[error("docker at {host} does not answer")]
    Unreachable {
        /// The endpoint.
        host: String,
        /// What bollard said.
        #[source]
        source: bollard::errors::Error,
    },
    /// A file that goes into an image cannot be read.
    #[error("cannot read {path} for image {image}")]
    ReadFile {
        /// The file on the host.
        path: PathBuf,
        /// The image being built.
        image: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The busybox binary is not a static executable, so it cannot run `FROM scratch`.
    #[error("{path} cannot run in image {image} built from scratch: {why} (install busybox-static)")]
    NotStatic {
        /// The file on the host.
        path: PathBuf,
        /// The image being built.
        image: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The build context could not be packed.
    #[error("cannot pack the build context of image {image}")]
    Pack {
        /// The image being built.
        image: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon reported a failed build.
    #[error("building image {image} failed: {detail}")]
    Build {
        /// The image being built.
        image: String,
        /// What the daemon said.
        detail: String,
    },
    /// A Docker API call failed.
    #[error("docker failed to {doing} {object}")]
    Docker {
        /// What was being done (`inspect image`, `list containers of node`).
        doing: &'static str,
        /// The image, container or node concerned.
        object: String,
        /// What bollard said.
        #[source]
        source: bollard::errors::Error,
    },
}

/// The result type of Docker setup.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for RuntimeError {
    fn from(error: Error) -> Self {
        RuntimeError::Unavailable(error_chain(&error))
    }
}

/// An error and its sources on one line, for the string-only variants of [`RuntimeError`].
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The HTTP status of a Docker API error, when the daemon answered.
pub(crate) fn status(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Turns a Docker API error about `what` `id` into a runtime error: 404 is
/// [`RuntimeError::NotFound`], another answer of the daemon a [`RuntimeError::Container`] with
/// `reason` and the daemon's message, and a transport failure [`RuntimeError::Unavailable`].
pub(crate) fn classify(
    error: bollard::errors::Error,
    what: &'static str,
    id: &str,
    reason: &'static str,
) -> RuntimeError {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => {
            RuntimeError::NotFound { what, id: id.to_owned() }
        }
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            RuntimeError::Container { reason, detail: message }
        }
        other => RuntimeError::Unavailable(format!("{what} {id}: {}", error_chain(&other))),
    }
}

/// A transport or daemon failure while doing something not tied to one object (listing).
pub(crate) fn unavailable(doing: &str, error: bollard::errors::Error) -> RuntimeError {
    RuntimeError::Unavailable(format!("{doing}: {}", error_chain(&error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError { status_code, message: message.to_owned() }
    }

    #[test]
    fn not_found_names_the_object() {
        let error = classify(server(404, "No such container: abc"), "container", "abc", "RunContainerError");
        assert!(
            matches!(&error, RuntimeError::NotFound { what: "container", id } if id == "abc"),
            "{error:?}"
        );
        assert_eq!(error.reason(), "ContainerNotFound");
    }

    #[test]
    fn daemon_refusals_keep_the_reason_and_the_message() {
        let message = "exec: \"nosuch\": executable file not found in $PATH";
        let error = classify(server(400, message), "container", "abc", "RunContainerError");
        assert_eq!(error.reason(), "RunContainerError");
        assert!(error.to_string().contains("executable file not found"), "{error}");
    }

    #[test]
    fn transport_failures_are_unavailable() {
        let error =
            classify(bollard::errors::Error::RequestTimeoutError, "container", "abc", "RunContainerError");
        assert!(
            matches!(&error, RuntimeError::Unavailable(text) if text.starts_with("container abc")),
            "{error:?}"
        );
        assert_eq!(status(&server(409, "conflict")), Some(409));
        assert_eq!(status(&bollard::errors::Error::RequestTimeoutError), None);
    }

    #[test]
    fn setup_errors_carry_their_causes_into_runtime_errors() {
        let error = Error::Docker {
            doing: "inspect image",
            object: "flotilla/pause:1".to_owned(),
            source: server(500, "disk full"),
        };
        let runtime: RuntimeError = error.into();
        let text = runtime.to_string();
        assert!(text.contains("inspect image flotilla/pause:1") && text.contains("disk full"), "{text}");
    }
}
