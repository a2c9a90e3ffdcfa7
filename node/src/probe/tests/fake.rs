//! A runtime that only runs exec probes, from a script the test changes as it goes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::time::Instant;

use crate::runtime::{
    Container, ContainerConfig, ContainerRuntime, Error, ExecOutput, LogOptions, Result, Sandbox,
    SandboxConfig,
};

/// What an exec of a command does.
#[derive(Clone, Debug)]
pub(super) enum Script {
    /// Exits with this code and output.
    Exit(i32, &'static str),
    /// The runtime fails.
    Fail,
    /// Never returns.
    Hang,
}

/// One exec call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Call {
    pub(super) container_id: String,
    pub(super) command: String,
    pub(super) at: Instant,
}

/// Exec outcomes by command (the command's words joined by spaces); unknown commands exit 0.
#[derive(Default)]
pub(super) struct FakeRuntime {
    script: Mutex<HashMap<String, Script>>,
    calls: Mutex<Vec<Call>>,
}

impl FakeRuntime {
    pub(super) fn set(&self, command: &str, script: Script) {
        self.script.lock().expect("test lock").insert(command.to_string(), script);
    }

    pub(super) fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("test lock").clone()
    }

    /// The calls of `command`, as offsets from `start` in whole seconds.
    pub(super) fn times(&self, command: &str, start: Instant) -> Vec<u64> {
        self.calls()
            .iter()
            .filter(|c| c.command == command)
            .map(|c| c.at.duration_since(start).as_secs())
            .collect()
    }
}

fn unsupported<T>() -> Result<T> {
    Err(Error::Unavailable("the fake runtime only runs exec".into()))
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn ensure_image(&self, _image: &str) -> Result<()> {
        unsupported()
    }

    async fn run_sandbox(&self, _config: &SandboxConfig) -> Result<Sandbox> {
        unsupported()
    }

    async fn remove_sandbox(&self, _id: &str) -> Result<()> {
        unsupported()
    }

    async fn create_container(&self, _sandbox_id: &str, _config: &ContainerConfig) -> Result<String> {
        unsupported()
    }

    async fn start_container(&self, _id: &str) -> Result<()> {
        unsupported()
    }

    async fn stop_container(&self, _id: &str, _grace: Duration) -> Result<()> {
        unsupported()
    }

    async fn remove_container(&self, _id: &str) -> Result<()> {
        unsupported()
    }

    async fn sandboxes(&self) -> Result<Vec<Sandbox>> {
        unsupported()
    }

    async fn containers(&self) -> Result<Vec<Container>> {
        unsupported()
    }

    async fn logs(&self, _id: &str, _options: &LogOptions) -> Result<BoxStream<'static, Result<Bytes>>> {
        unsupported()
    }

    async fn exec(&self, id: &str, command: &[String], _timeout: Duration) -> Result<ExecOutput> {
        let command = command.join(" ");
        self.calls.lock().expect("test lock").push(Call {
            container_id: id.to_string(),
            command: command.clone(),
            at: Instant::now(),
        });
        let script = self.script.lock().expect("test lock").get(&command).cloned();
        match script.unwrap_or(Script::Exit(0, "")) {
            Script::Exit(code, output) => {
                Ok(ExecOutput { exit_code: code, output: output.as_bytes().to_vec() })
            }
            Script::Fail => Err(Error::NotFound { what: "container", id: id.to_string() }),
            Script::Hang => std::future::pending().await,
        }
    }
}
