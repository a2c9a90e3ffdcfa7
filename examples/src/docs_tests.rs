//! The configuration files shown in `docs/operations.md` ("Configuration file"), read by the
//! real commands: each YAML block there is parsed as `flotilla server --config FILE` or
//! `flotilla agent --config FILE` would parse it, so the documented keys and values cannot
//! drift from the flags.

use std::ffi::OsString;
use std::path::Path;

use clap::{CommandFactory as _, Parser as _};

use super::{Cli, Cmd};
use crate::config::expand;

const OPERATIONS: &str = include_str!("../../docs/operations.md");
const FILE: &str = "/etc/flotilla/example.yaml";

/// The YAML blocks of the "Configuration file" section, in order.
fn config_blocks() -> Vec<&'static str> {
    let start = OPERATIONS.find("## Configuration file").expect("operations.md has a configuration section");
    let section = &OPERATIONS[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section.split("```yaml\n").skip(1).filter_map(|rest| rest.split("\n```").next()).collect()
}

/// Parses `line` with `text` as the config file and `env` as the whole environment.
fn parse(line: &str, text: &str, env: &[(&str, &str)]) -> Cli {
    let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
    let expanded = expand(
        Cli::command(),
        args,
        |name| env.iter().find(|(k, _)| name == std::ffi::OsStr::new(k)).map(|(_, v)| OsString::from(v)),
        |path| {
            assert_eq!(path, Path::new(FILE));
            Ok(text.to_string())
        },
    )
    .unwrap_or_else(|e| panic!("the documented file is refused: {e}\n{text}"));
    let args = expanded.args.clone();
    Cli::try_parse_from(args).map_err(|e| expanded.annotate(e)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn the_documented_server_file_sets_what_it_shows() {
    let blocks = config_blocks();
    assert_eq!(blocks.len(), 2, "a server file and a node file: {blocks:?}");
    let cli = parse(&format!("flotilla server --config {FILE}"), blocks[0], &[]);
    assert!(matches!(cli.log_format, crate::host::LogFormat::Json));
    let Cmd::Server(server) = cli.cmd else { panic!("not parsed as `flotilla server`") };
    let c = &server.args.control;
    assert_eq!(c.data_dir.as_deref(), Some(Path::new("/var/lib/flotilla")));
    assert_eq!(c.api_listen.to_string(), "0.0.0.0:6443");
    assert_eq!(c.etcd_listen.to_string(), "10.0.0.1:2379");
    assert_eq!(c.raft_listen.to_string(), "0.0.0.0:2380");
    assert_eq!(server.args.advertise.as_deref(), Some("10.0.0.1:2380"));
    assert_eq!(c.tls_san, ["flotilla.example.com", "10.0.0.1"]);
    assert!(!c.allow_anonymous);
    assert_eq!(c.compaction_interval.as_secs(), 3600);

    // The documented override: the environment beats the file.
    let cli = parse(
        &format!("flotilla server --config {FILE}"),
        blocks[0],
        &[("FLOTILLA_API_LISTEN", "127.0.0.1:6443")],
    );
    let Cmd::Server(server) = cli.cmd else { panic!("not parsed as `flotilla server`") };
    assert_eq!(server.args.control.api_listen.to_string(), "127.0.0.1:6443");
}

#[test]
fn the_documented_node_file_sets_what_it_shows() {
    let blocks = config_blocks();
    let token = "abcdef.0123456789abcdef";
    let cli = parse(&format!("flotilla agent --config {FILE}"), blocks[1], &[("FLOTILLA_TOKEN", token)]);
    let Cmd::Agent(agent) = cli.cmd else { panic!("not parsed as `flotilla agent`") };
    let a = &agent.args;
    assert_eq!(a.server, ["https://10.0.0.1:6443"]);
    assert!(a.ca_hash.as_deref().is_some_and(|h| h.starts_with("sha256:")));
    assert_eq!(a.data_dir.as_deref(), Some(Path::new("/var/lib/flotilla-agent")));
    assert_eq!(a.node_name.as_deref(), Some("node-2"));
    assert_eq!(a.node_ip.to_string(), "10.0.0.2");
    assert_eq!(a.kubelet_listen.to_string(), "10.0.0.2:10250");
    assert_eq!(a.runtime, crate::agent::AgentRuntime::Process);
}
