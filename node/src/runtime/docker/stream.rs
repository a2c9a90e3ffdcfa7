//! Reading from containers: logs and exec.

use std::time::Duration;

use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::query_parameters::{LogsOptions, LogsOptionsBuilder};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::jiff::Timestamp;
use tracing::debug;

use super::DockerRuntime;
use super::error::classify;
use crate::runtime::{Error as RuntimeError, ExecOutput, LogOptions, Result};

/// The reason of a log read that fails.
const LOGS_ERROR: &str = "LogsError";
/// The reason of an exec that cannot be created or started.
const EXEC_ERROR: &str = "ExecError";
/// The reason of an exec that outlives its timeout.
pub(crate) const EXEC_TIMEOUT: &str = "ExecTimeout";
/// How much exec output is kept; the rest is read and dropped (probes need little).
const EXEC_OUTPUT_LIMIT: usize = 1 << 20;
/// How often an exec whose output ended is polled until the daemon records its exit code.
const EXEC_EXIT_POLL: Duration = Duration::from_millis(10);

impl DockerRuntime {
    pub(super) async fn logs_impl(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        // Checked first so that a missing container is an error of this call, not of the stream.
        self.docker
            .inspect_container(id, None)
            .await
            .map_err(|error| classify(error, "container", id, LOGS_ERROR))?;
        let owned_id = id.to_owned();
        let stream = self
            .docker
            .logs(id, Some(logs_options(options)))
            .map_ok(bollard::container::LogOutput::into_bytes)
            .map_err(move |error| classify(error, "container", &owned_id, LOGS_ERROR));
        Ok(stream.boxed())
    }

    pub(super) async fn exec_impl(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        match tokio::time::timeout(timeout, self.exec_to_end(id, command)).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(RuntimeError::Container {
                reason: EXEC_TIMEOUT,
                detail: format!("command {command:?} in container {id} did not finish within {timeout:?}"),
            }),
        }
    }

    async fn exec_to_end(&self, id: &str, command: &[String]) -> Result<ExecOutput> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            ..ExecConfig::default()
        };
        let exec = self
            .docker
            .create_exec(id, config)
            .await
            .map_err(|error| classify(error, "container", id, EXEC_ERROR))?;
        let exec_error = |error| classify(error, "exec", &exec.id, EXEC_ERROR);
        let mut output = Vec::new();
        match self.docker.start_exec(&exec.id, None).await.map_err(exec_error)? {
            StartExecResults::Attached { output: mut chunks, .. } => {
                while let Some(chunk) = chunks.try_next().await.map_err(exec_error)? {
                    let room = EXEC_OUTPUT_LIMIT.saturating_sub(output.len());
                    let bytes = chunk.into_bytes();
                    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            StartExecResults::Detached => {
                return Err(RuntimeError::Unavailable(format!(
                    "exec {} in container {id} started detached",
                    exec.id
                )));
            }
        }
        // The output ends when the process does, but the daemon records the exit code a moment later.
        loop {
            let inspect = self.docker.inspect_exec(&exec.id).await.map_err(exec_error)?;
            if inspect.running != Some(true) {
                let exit_code =
                    inspect.exit_code.and_then(|code| i32::try_from(code).ok()).ok_or_else(|| {
                        RuntimeError::Unavailable(format!(
                            "exec {} in container {id} ended without an exit code",
                            exec.id
                        ))
                    })?;
                debug!(container = %id, exit_code, bytes = output.len(), "exec finished");
                return Ok(ExecOutput { exit_code, output });
            }
            tokio::time::sleep(EXEC_EXIT_POLL).await;
        }
    }
}

/// Docker's log query: both streams; `since` in whole seconds, rounded down so that no line
/// at or after it is lost.
fn logs_options(options: &LogOptions) -> LogsOptions {
    let mut builder = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(options.follow)
        .timestamps(options.timestamps)
        .tail(&options.tail_lines.map_or_else(|| "all".to_owned(), |lines| lines.to_string()));
    if let Some(since) = options.since {
        builder = builder.since(since_seconds(since));
    }
    builder.build()
}

fn since_seconds(since: Timestamp) -> i32 {
    // Docker reads 0 as "from the beginning"; a time before 1970 means the same.
    i32::try_from(since.as_second().max(0)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_map_to_docker_query() {
        let all = logs_options(&LogOptions::default());
        assert!(all.stdout && all.stderr && !all.follow && !all.timestamps);
        assert_eq!((all.tail.as_str(), all.since), ("all", 0));

        let since: Timestamp = "2025-01-02T03:04:05.9Z".parse().expect("test time");
        let some = logs_options(&LogOptions {
            follow: true,
            tail_lines: Some(5),
            since: Some(since),
            timestamps: true,
        });
        assert!(some.follow && some.timestamps);
        assert_eq!(some.tail, "5");
        assert_eq!(i64::from(some.since), since.as_second(), "rounded down to the second");
    }

    #[test]
    fn since_is_clamped_to_docker_range() {
        assert_eq!(since_seconds(Timestamp::UNIX_EPOCH), 0);
        assert_eq!(since_seconds("1960-01-01T00:00:00Z".parse().expect("test time")), 0);
        assert_eq!(since_seconds("2100-01-01T00:00:00Z".parse().expect("test time")), i32::MAX);
    }
}
