//! `--config FILE` through the real binaries: what the file sets reaches clap's validation,
//! in its place in the precedence, and a bad file fails with its name and key. Every case fails
//! while parsing, so no cluster starts.

use std::path::Path;
use std::process::{Command, Output};

/// Writes `text` as a config file in a new temporary directory.
fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let path = dir.path().join("flotilla.yaml");
    std::fs::write(&path, text).expect("writing the config file");
    (dir, path)
}

/// Runs `program` with `args` and only `env` as its environment.
fn run(program: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// The exit code and standard error of `output`.
fn failure(output: &Output) -> (Option<i32>, String) {
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

const FLOTILLA: &str = env!("CARGO_BIN_EXE_flotilla");

#[test]
fn a_bad_value_from_the_file_is_reported_by_clap_with_the_file() {
    let (_dir, path) = config_file("api-listen: not-an-address\n");
    let file = path.to_str().expect("temporary paths are UTF-8");
    let (code, stderr) = failure(&run(FLOTILLA, &["up", "--config", file], &[]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("invalid value 'not-an-address' for '--api-listen"), "{stderr}");
    assert!(stderr.contains(&format!("was set by key 'api-listen' in config file {file}")), "{stderr}");
}

#[test]
fn an_unknown_key_fails_with_the_file_and_key() {
    let (_dir, path) = config_file("api-listn: 127.0.0.1:6443\n");
    let file = path.to_str().expect("temporary paths are UTF-8");
    let (code, stderr) = failure(&run(FLOTILLA, &["server", "--config", file], &[]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("config file {file}: unknown key 'api-listn' (did you mean 'api-listen'?)")),
        "{stderr}"
    );
}

#[test]
fn flag_beats_environment_beats_file() {
    // Each source gives api-listen a different invalid value; clap's error shows which won.
    // The file itself is named by FLOTILLA_CONFIG.
    let (_dir, path) = config_file("api-listen: from-file\n");
    let from_env = Path::new("from-env");
    let env = [("FLOTILLA_CONFIG", path.as_path())];
    let (_, stderr) = failure(&run(FLOTILLA, &["up"], &env));
    assert!(stderr.contains("invalid value 'from-file'"), "{stderr}");
    let env = [("FLOTILLA_CONFIG", path.as_path()), ("FLOTILLA_API_LISTEN", from_env)];
    let (_, stderr) = failure(&run(FLOTILLA, &["up"], &env));
    assert!(stderr.contains("invalid value 'from-env'"), "{stderr}");
    assert!(!stderr.contains("config file"), "{stderr}");
    let (_, stderr) = failure(&run(FLOTILLA, &["up", "--api-listen", "from-flag"], &env));
    assert!(stderr.contains("invalid value 'from-flag'"), "{stderr}");
}

#[test]
fn flotilla_agent_takes_its_required_server_from_the_file() {
    let (_dir, path) = config_file("server: https://127.0.0.1:6443\nkubelet-listen: bad\n");
    let file = path.to_str().expect("temporary paths are UTF-8");
    let (code, stderr) = failure(&run(env!("CARGO_BIN_EXE_flotilla-agent"), &["--config", file], &[]));
    // Not "the following required arguments were not provided: --server".
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("invalid value 'bad' for '--kubelet-listen"), "{stderr}");
}
