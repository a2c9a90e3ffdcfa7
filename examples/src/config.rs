//! `--config FILE`: a long-running subcommand's flags from a YAML file.
//!
//! The file maps long flag names, without their dashes, to values: `data-dir: /var/lib/flotilla`,
//! a list for a repeatable flag (`tls-san: [a, b]`), `true` or `false` for a switch. Before clap
//! parses, [`expand`] finds the subcommand and its file (`--config`, or the flag's environment
//! variable) in the command line, and inserts each key as `--key=value` right after the
//! subcommand's name unless the command line or the flag's environment variable already sets
//! it. Clap then validates those values like typed ones, and the precedence is: command-line
//! flag, environment variable, config file, default.
//!
//! Flags are looked up in clap's own description of the command, so a new flag can be set in
//! the file without code here; a subcommand takes a file by flattening [`WithConfig`].

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue};
use clap::{Arg, ArgAction, Command};
use serde_yaml_ng::Value;

/// The long name of the flag that names the file.
const CONFIG_FLAG: &str = "config";

/// Keys that name no flag a file may set.
const REFUSED_KEYS: [&str; 3] = [CONFIG_FLAG, "help", "version"];

/// A subcommand's flags `T` plus `--config`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct WithConfig<T: clap::Args> {
    /// The subcommand's own flags.
    #[command(flatten)]
    pub(crate) args: T,
    /// Flags from a YAML file (precedence: command line > environment > file > default).
    ///
    /// Each key of the file is a long flag name of this command without its dashes, with the
    /// flag's value: `data-dir: /var/lib/flotilla`; a list for a repeatable flag
    /// (`tls-san: [a, b]`); true or false for a switch (`allow-anonymous: true`). A flag given
    /// on the command line wins over its environment variable, which wins over the file,
    /// which wins over the flag's default.
    #[arg(long = CONFIG_FLAG, env = "FLOTILLA_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

impl<T: clap::Args> WithConfig<T> {
    /// The subcommand's flags, after logging which file (if any) supplied some of them.
    pub(crate) fn into_args(self) -> T {
        if let Some(file) = &self.config {
            tracing::info!(file = %file.display(), "flags from config file");
        }
        self.args
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The file could not be read.
    #[error("reading config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not YAML.
    #[error("config file {} is not valid YAML", path.display())]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The document is not a map.
    #[error("config file {}: expected a map of flag names to values, found {found}", path.display())]
    NotAMap { path: PathBuf, found: &'static str },
    /// A key names no flag of the subcommand.
    #[error("config file {}: unknown key '{key}'{hint}", path.display())]
    UnknownKey {
        path: PathBuf,
        key: String,
        /// ` (did you mean 'x'?)`, or empty.
        hint: String,
    },
    /// A key names a flag a file may not set.
    #[error("config file {}: key '{key}' cannot be set in a config file", path.display())]
    Refused { path: PathBuf, key: String },
    /// A value of the wrong shape for its flag.
    #[error("config file {}: key '{key}' takes {expected}, not {found}", path.display())]
    WrongType { path: PathBuf, key: String, expected: &'static str, found: &'static str },
}

/// This module's results.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// A command line with the config file's flags inserted.
#[derive(Debug)]
pub(crate) struct Expanded {
    /// The arguments for clap to parse.
    pub(crate) args: Vec<OsString>,
    /// The file the flags came from, if one was read.
    file: Option<PathBuf>,
    /// The long names of the flags inserted from the file.
    from_file: Vec<String>,
}

impl Expanded {
    /// Adds to a clap error about a flag that came from the file a tip naming the file.
    pub(crate) fn annotate(&self, mut err: clap::Error) -> clap::Error {
        let Some(file) = &self.file else { return err };
        let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else { return err };
        let long = arg.split_whitespace().next().and_then(|a| a.strip_prefix("--"));
        let Some(long) = long.filter(|l| self.from_file.iter().any(|f| f == l)).map(str::to_string) else {
            return err;
        };
        let mut tips = match err.get(ContextKind::Suggested) {
            Some(ContextValue::StyledStrs(tips)) => tips.clone(),
            _ => Vec::new(),
        };
        tips.push(format!("'--{long}' was set by key '{long}' in config file {}", file.display()).into());
        err.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
        err
    }
}

/// Parses this process's command line as `C`, with the flags of its config file added (see
/// [`expand`]); a bad value exits with clap's message and, if the file set it, where.
pub(crate) fn parse<C: clap::Parser>() -> Result<C> {
    let args = std::env::args_os().collect();
    let expanded = expand(C::command(), args, |v| std::env::var_os(v), |f| std::fs::read_to_string(f))?;
    Ok(C::try_parse_from(&expanded.args).unwrap_or_else(|e| expanded.annotate(e).exit()))
}

/// Inserts into `args` (a whole command line, program name first) the flags of the config file
/// of the subcommand `args` runs in `cmd`. `env` looks up environment variables and `read`
/// reads the file. Returns `args` unchanged when that subcommand takes no `--config`, when no
/// file is named, or when help or the version is asked for.
pub(crate) fn expand(
    mut cmd: Command,
    mut args: Vec<OsString>,
    env: impl Fn(&OsStr) -> Option<OsString>,
    read: impl Fn(&Path) -> io::Result<String>,
) -> Result<Expanded> {
    // Building propagates global flags (like --log-format) into the subcommands.
    cmd.build();
    let scan = scan(&cmd, &args);
    let unchanged = |args| Ok(Expanded { args, file: None, from_file: Vec::new() });
    let Some(config_arg) = scan.scope.get_arguments().find(|a| a.get_long() == Some(CONFIG_FLAG)) else {
        return unchanged(args);
    };
    if scan.present.iter().any(|a| is_help_or_version(a.get_action())) {
        return unchanged(args);
    }
    let file = scan
        .config
        .or_else(|| config_arg.get_env().and_then(&env))
        .filter(|f| !f.is_empty())
        .map(PathBuf::from);
    let Some(file) = file else { return unchanged(args) };
    let text = read(&file).map_err(|source| Error::Read { path: file.clone(), source })?;
    let flags = flags_from(scan.scope, &file, &text)?;
    let mut inserted = Vec::new();
    let mut from_file = Vec::new();
    for (arg, values) in flags {
        let on_command_line = scan.present.iter().any(|p| p.get_id() == arg.get_id());
        let in_env = arg.get_env().is_some_and(|name| env(name).is_some());
        if on_command_line || in_env || values.is_empty() {
            continue;
        }
        let long = arg.get_long().expect("flags_from only returns flags with a long name");
        from_file.push(long.to_string());
        inserted.extend(values.into_iter().map(OsString::from));
    }
    args.splice(scan.at..scan.at, inserted);
    Ok(Expanded { args, file: Some(file), from_file })
}

/// What [`scan`] found in a command line.
struct Scan<'a> {
    /// The innermost subcommand named (the root command when none is).
    scope: &'a Command,
    /// Where that subcommand's flags start: the index after its name.
    at: usize,
    /// The flags given, in whichever (sub)command they were given.
    present: Vec<&'a Arg>,
    /// The last `--config` value given.
    config: Option<OsString>,
}

/// Walks a command line the way clap will: descends into subcommands, and skips the values of
/// flags that take one (so a value like `up` is not taken for a subcommand).
fn scan<'a>(root: &'a Command, args: &[OsString]) -> Scan<'a> {
    let mut scan = Scan { scope: root, at: args.len().min(1), present: Vec::new(), config: None };
    let mut i = 1;
    while let Some(token) = args.get(i) {
        i += 1;
        // Flags and subcommand names are UTF-8; anything else is a value.
        let Some(text) = token.to_str() else { continue };
        if text == "--" {
            break;
        }
        if let Some(flag) = text.strip_prefix("--") {
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(OsString::from(value))),
                None => (flag, None),
            };
            let Some(arg) = scan.scope.get_arguments().find(|a| has_long(a, name)) else { continue };
            let value = match inline {
                Some(v) => Some(v),
                None if arg.get_action().takes_values() => {
                    i += 1;
                    args.get(i - 1).cloned()
                }
                None => None,
            };
            if arg.get_long() == Some(CONFIG_FLAG) {
                scan.config = value;
            }
            scan.present.push(arg);
        } else if let Some(shorts) = text.strip_prefix('-') {
            // `-x`, `-xVALUE` or a cluster `-xyz`: the first letter is a flag.
            let mut letters = shorts.chars();
            let Some(first) = letters.next() else { continue };
            let Some(arg) = scan.scope.get_arguments().find(|a| a.get_short() == Some(first)) else {
                continue;
            };
            if arg.get_action().takes_values() && letters.next().is_none() {
                i += 1;
            }
            scan.present.push(arg);
        } else if let Some(sub) = scan.scope.find_subcommand(text) {
            scan.scope = sub;
            scan.at = i;
        }
    }
    scan
}

/// Whether `name` is `arg`'s long name or one of its aliases.
fn has_long(arg: &Arg, name: &str) -> bool {
    arg.get_long() == Some(name) || arg.get_all_aliases().is_some_and(|a| a.contains(&name))
}

fn is_help_or_version(action: &ArgAction) -> bool {
    matches!(action, ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version)
}

/// The file's flags, in its order: each flag of `cmd` a key names, with the command-line
/// arguments that give it the key's value (none for a false switch).
fn flags_from<'a>(cmd: &'a Command, path: &Path, text: &str) -> Result<Vec<(&'a Arg, Vec<String>)>> {
    let doc: Value =
        serde_yaml_ng::from_str(text).map_err(|source| Error::Yaml { path: path.to_path_buf(), source })?;
    let map = match doc {
        // An empty file sets nothing.
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(map) => map,
        other => return Err(Error::NotAMap { path: path.to_path_buf(), found: kind(&other) }),
    };
    let mut flags = Vec::new();
    for (key, value) in &map {
        let key = scalar(key).unwrap_or_else(|| format!("<{}>", kind(key)));
        let refused = || Error::Refused { path: path.to_path_buf(), key: key.clone() };
        if REFUSED_KEYS.contains(&key.as_str()) {
            return Err(refused());
        }
        let Some(arg) = cmd.get_arguments().find(|a| has_long(a, &key)) else {
            let hint = closest(cmd, &key).map(|k| format!(" (did you mean '{k}'?)")).unwrap_or_default();
            return Err(Error::UnknownKey { path: path.to_path_buf(), key: key.clone(), hint });
        };
        let long = arg.get_long().expect("found by its long name");
        let wrong = |expected, found| Error::WrongType {
            path: path.to_path_buf(),
            key: key.clone(),
            expected,
            found,
        };
        // One `--long=value` from a scalar, or the error saying a scalar was `expected`.
        let one = |v: &Value, expected| {
            scalar(v).map(|s| format!("--{long}={s}")).ok_or_else(|| wrong(expected, kind(v)))
        };
        let values = match (arg.get_action(), value) {
            (ArgAction::SetTrue | ArgAction::SetFalse, Value::Bool(on)) => {
                on.then(|| format!("--{long}")).into_iter().collect()
            }
            (ArgAction::SetTrue | ArgAction::SetFalse, other) => {
                return Err(wrong("true or false", kind(other)));
            }
            (ArgAction::Append, Value::Sequence(items)) => {
                items.iter().map(|item| one(item, "a list of values")).collect::<Result<_>>()?
            }
            (ArgAction::Append, other) => vec![one(other, "a value or a list of values")?],
            (ArgAction::Set, other) => vec![one(other, "a single value")?],
            _ => return Err(refused()),
        };
        flags.push((arg, values));
    }
    Ok(flags)
}

/// The text of a string, number or boolean.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What a YAML value is, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty value",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The settable flag of `cmd` whose long name is nearest `key`, if one is near.
fn closest<'a>(cmd: &'a Command, key: &str) -> Option<&'a str> {
    cmd.get_arguments()
        .filter(|a| !is_help_or_version(a.get_action()))
        .filter_map(Arg::get_long)
        .filter(|long| !REFUSED_KEYS.contains(long))
        .map(|long| (edit_distance(key, long), long))
        .filter(|(d, _)| *d <= 2.max(key.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, long)| long)
}

/// Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use clap::{Args, CommandFactory, Parser, Subcommand};

    use super::*;

    /// A command line shaped like `flotilla`'s: a global flag, subcommands with and without
    /// `--config`. (Not `flotilla`'s own: this module is compiled into `flotilla-agent` too.)
    #[derive(Parser)]
    struct Cli {
        #[arg(long, global = true, default_value = "human")]
        log_format: String,
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Subcommand)]
    enum Cmd {
        Up(WithConfig<UpFlags>),
        Server(WithConfig<ServerFlags>),
        Status,
    }

    #[derive(Args, Clone, Debug)]
    struct UpFlags {
        #[arg(long, env = "FLOTILLA_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, env = "FLOTILLA_API_LISTEN", default_value = "127.0.0.1:6443")]
        api_listen: SocketAddr,
        #[arg(long = "tls-san")]
        tls_san: Vec<String>,
        #[arg(long)]
        allow_anonymous: bool,
        #[arg(long, env = "FLOTILLA_NODE_NAME")]
        node_name: Option<String>,
    }

    #[derive(Args, Clone, Debug)]
    struct ServerFlags {
        #[arg(long)]
        advertise: Option<String>,
    }

    const FILE: &str = "f.yaml";

    /// Expands `args` for `cmd` with `text` as the file `f.yaml` and `env` as the environment.
    fn expand_in(cmd: Command, args: &[&str], text: &str, env: &[(&str, &str)]) -> Result<Expanded> {
        let env: HashMap<OsString, OsString> = env.iter().map(|(k, v)| (k.into(), v.into())).collect();
        expand(
            cmd,
            args.iter().map(OsString::from).collect(),
            |name| env.get(name).cloned(),
            |path| match path == Path::new(FILE) {
                true => Ok(text.to_string()),
                false => Err(io::Error::from(io::ErrorKind::NotFound)),
            },
        )
    }

    /// [`expand_in`] for [`Cli`] and a command line of words separated by spaces.
    fn flotilla(line: &str, text: &str, env: &[(&str, &str)]) -> Result<String> {
        let args: Vec<&str> = line.split(' ').collect();
        let expanded = expand_in(Cli::command(), &args, text, env)?;
        let args: Vec<_> =
            expanded.args.iter().map(|a| a.to_str().expect("test arguments are UTF-8")).collect();
        Ok(args.join(" "))
    }

    /// The message of the error [`flotilla`] returns for `line` and `text`.
    fn error(line: &str, text: &str) -> String {
        match flotilla(line, text, &[]) {
            Ok(args) => panic!("expected an error, got {args:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn file_flags_are_inserted_after_the_subcommand_and_parse() {
        let text = "data-dir: /var/lib/flotilla\napi-listen: 0.0.0.0:6443\ntls-san: [a.example, 10.0.0.1]\n\
                    allow-anonymous: true\nlog-format: json\n";
        let args =
            flotilla("flotilla up --config f.yaml --node-name n1", text, &[]).expect("the file is valid");
        assert_eq!(
            args,
            "flotilla up --data-dir=/var/lib/flotilla --api-listen=0.0.0.0:6443 --tls-san=a.example \
             --tls-san=10.0.0.1 --allow-anonymous --log-format=json --config f.yaml --node-name n1"
        );
        let cli = Cli::try_parse_from(args.split(' ')).expect("clap takes the inserted flags");
        assert_eq!(cli.log_format, "json");
        let Cmd::Up(up) = cli.cmd else { panic!("parsed as another subcommand") };
        let flags = &up.args;
        assert_eq!(flags.data_dir.as_deref(), Some(Path::new("/var/lib/flotilla")));
        assert_eq!(flags.api_listen.to_string(), "0.0.0.0:6443");
        assert_eq!(flags.tls_san, ["a.example", "10.0.0.1"]);
        assert!(flags.allow_anonymous);
        assert_eq!(flags.node_name.as_deref(), Some("n1"));
        assert_eq!(up.config.as_deref(), Some(Path::new(FILE)));
    }

    #[test]
    fn command_line_beats_environment_beats_file() {
        let text = "api-listen: 0.0.0.0:1\ndata-dir: /from/file\nnode-name: from-file\ntls-san: [file]\n\
                    log-format: json\n";
        let args = flotilla(
            "flotilla --log-format human up --config=f.yaml --api-listen 0.0.0.0:2 --tls-san=x",
            text,
            &[("FLOTILLA_DATA_DIR", "/from/env"), ("FLOTILLA_CONFIG", "elsewhere.yaml")],
        )
        .expect("the file is valid");
        // Only node-name is left to the file: api-listen, tls-san and log-format (a global flag,
        // given before the subcommand) are on the command line, data-dir in the environment;
        // and --config beats FLOTILLA_CONFIG.
        assert_eq!(
            args,
            "flotilla --log-format human up --node-name=from-file --config=f.yaml --api-listen 0.0.0.0:2 \
             --tls-san=x"
        );
    }

    #[test]
    fn the_file_can_be_named_by_the_environment() {
        let args = flotilla("flotilla server", "advertise: 10.0.0.1:2380\n", &[("FLOTILLA_CONFIG", FILE)])
            .expect("the file is valid");
        assert_eq!(args, "flotilla server --advertise=10.0.0.1:2380");
        let Cmd::Server(server) = Cli::try_parse_from(args.split(' ')).expect("valid").cmd else {
            panic!("not server")
        };
        assert_eq!(server.args.advertise.as_deref(), Some("10.0.0.1:2380"));
    }

    #[test]
    fn false_switches_and_empty_files_add_nothing() {
        let up = "flotilla up --config f.yaml";
        assert_eq!(flotilla(up, "allow-anonymous: false\n", &[]).expect("the file is valid"), up);
        assert_eq!(flotilla(up, "", &[]).expect("an empty file is valid"), up);
    }

    #[test]
    fn the_file_is_not_read_for_help_or_for_subcommands_without_config() {
        // The file would not parse; it is not even looked at.
        let help = "flotilla up --config f.yaml --help";
        assert_eq!(flotilla(help, "{", &[]).expect("help wins"), help);
        assert_eq!(
            flotilla("flotilla status", "{", &[("FLOTILLA_CONFIG", FILE)]).expect("not read"),
            "flotilla status"
        );
    }

    #[test]
    fn a_command_without_subcommands_gets_the_flags_after_the_program_name() {
        // flotilla-agent's shape: the agent's flags on the root command; --server is required.
        let cmd = WithConfig::<crate::agent::AgentArgs>::augment_args(Command::new("flotilla-agent"));
        let text = "server: https://10.0.0.1:6443\ntoken: abc.def\n";
        let expanded = expand_in(cmd.clone(), &["flotilla-agent", "--config", FILE], text, &[])
            .expect("the file is valid");
        let args: Vec<_> = expanded.args.iter().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            ["flotilla-agent", "--server=https://10.0.0.1:6443", "--token=abc.def", "--config", FILE]
        );
        let matches =
            cmd.try_get_matches_from(&expanded.args).expect("the required --server came from the file");
        assert_eq!(matches.get_one::<String>("server").map(String::as_str), Some("https://10.0.0.1:6443"));
    }

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        let up = "flotilla up --config f.yaml";
        assert_eq!(
            error(up, "api-listn: 0.0.0.0:6443\n"),
            "config file f.yaml: unknown key 'api-listn' (did you mean 'api-listen'?)"
        );
        assert_eq!(error(up, "frobnicate: 1\n"), "config file f.yaml: unknown key 'frobnicate'");
        // `advertise` is `flotilla server`'s, not `flotilla up`'s.
        assert_eq!(error(up, "advertise: a:1\n"), "config file f.yaml: unknown key 'advertise'");
        for key in ["config", "help", "version"] {
            assert_eq!(
                error(up, &format!("{key}: x\n")),
                format!("config file f.yaml: key '{key}' cannot be set in a config file")
            );
        }
    }

    #[test]
    fn values_of_the_wrong_shape_are_named() {
        let up = "flotilla up --config f.yaml";
        let cases = [
            ("api-listen: {host: a}\n", "key 'api-listen' takes a single value, not a map"),
            ("api-listen: [a, b]\n", "key 'api-listen' takes a single value, not a list"),
            ("data-dir:\n", "key 'data-dir' takes a single value, not an empty value"),
            ("allow-anonymous: \"yes\"\n", "key 'allow-anonymous' takes true or false, not a string"),
            ("tls-san: [[a]]\n", "key 'tls-san' takes a list of values, not a list"),
            ("tls-san: {a: b}\n", "key 'tls-san' takes a value or a list of values, not a map"),
        ];
        for (text, message) in cases {
            assert_eq!(error(up, text), format!("config file f.yaml: {message}"), "for {text:?}");
        }
        assert_eq!(
            error(up, "- a\n- b\n"),
            "config file f.yaml: expected a map of flag names to values, found a list"
        );
        assert_eq!(error(up, "a: [\n"), "config file f.yaml is not valid YAML");
        assert_eq!(error("flotilla up --config missing.yaml", ""), "reading config file missing.yaml");
    }

    #[test]
    fn clap_errors_about_file_values_name_the_file() {
        let expanded = expand_in(
            Cli::command(),
            &["flotilla", "up", "--config", FILE],
            "api-listen: not-an-address\n",
            &[],
        )
        .expect("the file is valid YAML");
        let from_file = Cli::try_parse_from(&expanded.args).err().expect("the address is invalid");
        let message = expanded.annotate(from_file).to_string();
        assert!(message.contains("invalid value 'not-an-address' for '--api-listen"), "{message}");
        assert!(
            message.contains("'--api-listen' was set by key 'api-listen' in config file f.yaml"),
            "{message}"
        );

        let expanded = expand_in(
            Cli::command(),
            &["flotilla", "up", "--config", FILE, "--api-listen", "bad"],
            "node-name: n\n",
            &[],
        )
        .expect("the file is valid YAML");
        let from_command_line = Cli::try_parse_from(&expanded.args).err().expect("the address is invalid");
        let message = expanded.annotate(from_command_line).to_string();
        assert!(message.contains("invalid value 'bad' for '--api-listen"), "{message}");
        assert!(!message.contains("config file"), "{message}");
    }

    #[test]
    fn near_names_are_within_a_small_edit_distance() {
        assert_eq!(edit_distance("api-listen", "api-listen"), 0);
        assert_eq!(edit_distance("api_listen", "api-listen"), 1);
        assert_eq!(edit_distance("data-dri", "data-dir"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
