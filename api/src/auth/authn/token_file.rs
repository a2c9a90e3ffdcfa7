//! The static token file of kube-apiserver's `--token-auth-file`: CSV records
//! `token,user,uid[,"group1,group2"]`, read with Go's `encoding/csv` rules (quoted fields,
//! `""` escapes, blank lines skipped, no comments).

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Error, Result, UserInfo};

/// Users by bearer token, from a token file. Tokens are kept as SHA-256 digests, so that
/// looking one up does not compare secrets byte by byte.
#[derive(Clone, Default)]
pub struct StaticTokens {
    users: HashMap<[u8; 32], UserInfo>,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticTokens").field("tokens", &self.users.len()).finish()
    }
}

/// The SHA-256 digest a token is filed under.
pub(super) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl StaticTokens {
    /// Reads and parses the token file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::ReadTokenFile { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses token file content; `source_name` names it in errors.
    ///
    /// As in Kubernetes, a record needs at least three fields (token, user name, uid); the
    /// fourth, if present, is a comma-separated group list (quote it). A record with an empty
    /// token is skipped with a warning; a repeated token replaces the earlier one.
    ///
    /// ```
    /// use flotilla_api::auth::StaticTokens;
    ///
    /// let tokens = StaticTokens::parse("s3cret,alice,1001,\"dev,ops\"\n", "tokens.csv")?;
    /// assert_eq!(tokens.get("s3cret").map(|u| u.groups.clone()), Some(vec!["dev".into(), "ops".into()]));
    /// let err = StaticTokens::parse("ok,a,1\nbad,b\n", "tokens.csv").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "token file tokens.csv, line 2: must have at least 3 columns (token, user name, user uid), found 2"
    /// );
    /// # Ok::<(), flotilla_api::auth::authn::Error>(())
    /// ```
    pub fn parse(text: &str, source_name: &str) -> Result<Self> {
        let records = parse_csv(text).map_err(|(line, message)| Error::TokenFile {
            source_name: source_name.to_string(),
            line,
            message,
        })?;
        let mut users = HashMap::new();
        for (number, (line, record)) in records.into_iter().enumerate() {
            if record.len() < 3 {
                return Err(Error::TokenFile {
                    source_name: source_name.to_string(),
                    line,
                    message: format!(
                        "must have at least 3 columns (token, user name, user uid), found {}",
                        record.len()
                    ),
                });
            }
            if record[0].is_empty() {
                tracing::warn!(file = source_name, record = number + 1, line, "empty token in token file");
                continue;
            }
            let groups: Vec<String> = record
                .get(3)
                .map(|g| g.split(',').filter(|g| !g.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            let user =
                UserInfo { name: record[1].clone(), uid: record[2].clone(), groups, ..Default::default() };
            if users.insert(token_hash(&record[0]), user).is_some() {
                tracing::warn!(
                    file = source_name,
                    record = number + 1,
                    line,
                    "duplicate token in token file"
                );
            }
        }
        Ok(StaticTokens { users })
    }

    /// The user of `token`.
    pub fn get(&self, token: &str) -> Option<&UserInfo> {
        self.users.get(&token_hash(token))
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// A CSV record: the line it starts on and its fields.
type Record = (usize, Vec<String>);

/// CSV records, or the line and message of the first error.
fn parse_csv(text: &str) -> std::result::Result<Vec<Record>, (usize, String)> {
    let normalized = text.replace("\r\n", "\n");
    let mut body = normalized.as_str();
    // Go drops a lone `\r` before end of file, and the final newline ends the last line.
    body = body.strip_suffix('\r').unwrap_or(body);
    body = body.strip_suffix('\n').unwrap_or(body);
    let lines: Vec<&str> = if body.is_empty() { Vec::new() } else { body.split('\n').collect() };

    let mut records = Vec::new();
    let mut next = 0;
    while next < lines.len() {
        let start = next + 1;
        let mut rest = lines[next];
        let mut line_no = start;
        next += 1;
        if rest.is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        'fields: loop {
            if !rest.starts_with('"') {
                let (field, more) = match rest.find(',') {
                    Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                    None => (rest, None),
                };
                if let Some(col) = field.find('"') {
                    let column = lines[line_no - 1].len() - rest.len() + col + 1;
                    return Err((line_no, format!("bare \" in non-quoted-field (column {column})")));
                }
                fields.push(field.to_string());
                match more {
                    Some(more) => {
                        rest = more;
                        continue 'fields;
                    }
                    None => break 'fields,
                }
            }
            // A quoted field: up to the closing quote, which may be lines further on.
            rest = &rest[1..];
            let mut field = String::new();
            loop {
                match rest.find('"') {
                    Some(i) => {
                        field.push_str(&rest[..i]);
                        rest = &rest[i + 1..];
                        if let Some(after) = rest.strip_prefix('"') {
                            field.push('"');
                            rest = after;
                        } else if let Some(after) = rest.strip_prefix(',') {
                            fields.push(field);
                            rest = after;
                            continue 'fields;
                        } else if rest.is_empty() {
                            fields.push(field);
                            break 'fields;
                        } else {
                            return Err((line_no, "extraneous or missing \" in quoted-field".to_string()));
                        }
                    }
                    None if next < lines.len() => {
                        field.push_str(rest);
                        field.push('\n');
                        rest = lines[next];
                        next += 1;
                        line_no += 1;
                    }
                    None => return Err((line_no, "extraneous or missing \" in quoted-field".to_string())),
                }
            }
        }
        records.push((start, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<Record> {
        parse_csv(text).expect("valid csv")
    }

    fn rec(line: usize, fields: &[&str]) -> Record {
        (line, fields.iter().map(|f| f.to_string()).collect())
    }

    #[test]
    fn csv_like_go() {
        assert_eq!(records("a,b,c\n"), [rec(1, &["a", "b", "c"])]);
        assert_eq!(records("a,b,c"), [rec(1, &["a", "b", "c"])]);
        assert_eq!(records("a,b,c\r\nd,e,f\r\n"), [rec(1, &["a", "b", "c"]), rec(2, &["d", "e", "f"])]);
        assert_eq!(records("\n\na,b\n\n"), [rec(3, &["a", "b"])]);
        assert_eq!(records("a,\"b,c\",d"), [rec(1, &["a", "b,c", "d"])]);
        assert_eq!(records("a,\"say \"\"hi\"\"\""), [rec(1, &["a", "say \"hi\""])]);
        assert_eq!(records("a,\"multi\nline\",b\nc"), [rec(1, &["a", "multi\nline", "b"]), rec(3, &["c"])]);
        assert_eq!(records("a,,\"\""), [rec(1, &["a", "", ""])]);
        assert_eq!(records(" a , b "), [rec(1, &[" a ", " b "])]);
        assert_eq!(records("# not a comment"), [rec(1, &["# not a comment"])]);
        assert_eq!(records(""), Vec::<Record>::new());
    }

    #[test]
    fn csv_errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("a,b,c\nx,y\"z,w\n", 2, "bare \" in non-quoted-field (column 4)"),
            ("a,b,c\n\"x\"y,z\n", 2, "extraneous or missing \" in quoted-field"),
            ("a,b,c\n\"open\nstill open\n", 3, "extraneous or missing \" in quoted-field"),
        ];
        for (text, line, message) in cases {
            assert_eq!(parse_csv(text), Err((*line, message.to_string())), "{text:?}");
        }
    }

    #[test]
    fn token_file_records() {
        let text = "\
tok1,alice,1,\"system:masters,dev\"
tok2,bob,2
tok3,carol,3,
tok4,dave,4,ops
,nobody,5
tok2,bobby,6
";
        let tokens = StaticTokens::parse(text, "t.csv").expect("valid");
        assert_eq!(tokens.len(), 4);
        let alice = tokens.get("tok1").expect("alice");
        assert_eq!((alice.name.as_str(), alice.uid.as_str()), ("alice", "1"));
        assert_eq!(alice.groups, ["system:masters", "dev"]);
        assert!(tokens.get("tok3").expect("carol").groups.is_empty());
        assert_eq!(tokens.get("tok4").expect("dave").groups, ["ops"]);
        // A repeated token: the last record wins, as in Kubernetes.
        assert_eq!(tokens.get("tok2").expect("bob").name, "bobby");
        assert!(tokens.get("").is_none());
        assert!(tokens.get("tok5").is_none());
    }

    #[test]
    fn token_file_errors() {
        let err = StaticTokens::parse("a,b,c\n\nonly,two\n", "t.csv").expect_err("two columns");
        assert_eq!(
            err.to_string(),
            "token file t.csv, line 3: must have at least 3 columns (token, user name, user uid), found 2"
        );
        let err = StaticTokens::parse("a,b,\"c\n", "t.csv").expect_err("unterminated quote");
        assert_eq!(err.to_string(), "token file t.csv, line 1: extraneous or missing \" in quoted-field");
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.csv");
        let err = StaticTokens::load(&missing).expect_err("no file");
        assert!(matches!(err, Error::ReadTokenFile { .. }));
        let present = dir.path().join("tokens.csv");
        std::fs::write(&present, "x,y,z\n").expect("write");
        assert_eq!(StaticTokens::load(&present).expect("loads").len(), 1);
    }
}
