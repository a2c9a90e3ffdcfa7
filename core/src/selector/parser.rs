//! The label selector parser: the grammar and error cases of Kubernetes' `labels.Parse`.
//!
//! ```text
//! selector    ::= "" | requirement ("," requirement)*
//! requirement ::= ["!"] KEY [ ("in" | "notin") "(" values ")" | ("=" | "==" | "!=" | ">" | "<") VALUE ]
//! values      ::= VALUE ("," VALUE)*      (empty values allowed: "()", "(a,)", "(,a)")
//! ```

use std::collections::BTreeSet;

use super::error::{Result, SelectorError, char_position};
use super::label::{Operator, Requirement, key_error};
use super::lexer::{Token, TokenKind, tokenize};
use crate::validation::{ErrorList, FieldPath};

/// Kubernetes' list of binary operators, as its parser prints it when one is missing.
const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

/// Whether `in` and `notin` are keywords (after a key) or plain identifiers (everywhere else).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token<'a>>,
    next: usize,
}

/// Parses a label selector string into requirements sorted by key.
pub(crate) fn parse(input: &str) -> Result<Vec<Requirement>> {
    let mut parser = Parser { input, tokens: tokenize(input), next: 0 };
    let mut requirements = parser.parse_selector()?;
    requirements.sort_by(|a, b| a.key().cmp(b.key()));
    Ok(requirements)
}

impl<'a> Parser<'a> {
    fn lookahead(&self, context: Context) -> Token<'a> {
        let last = self.tokens.len().saturating_sub(1);
        let token = self.tokens.get(self.next.min(last)).copied();
        let token =
            token.unwrap_or(Token { kind: TokenKind::EndOfString, literal: "", pos: self.input.len() });
        match token.kind {
            TokenKind::In | TokenKind::NotIn if context == Context::Values => {
                Token { kind: TokenKind::Identifier, ..token }
            }
            _ => token,
        }
    }

    fn consume(&mut self, context: Context) -> Token<'a> {
        let token = self.lookahead(context);
        if self.next + 1 < self.tokens.len() {
            self.next += 1;
        }
        token
    }

    fn syntax_error(&self, token: Token<'_>, expected: &str) -> SelectorError {
        SelectorError::Syntax {
            input: self.input.to_string(),
            position: char_position(self.input, token.pos),
            found: token.literal.to_string(),
            expected: expected.to_string(),
        }
    }

    fn requirement_error(&self, token: Token<'_>, expected: &str) -> SelectorError {
        SelectorError::Requirement {
            input: self.input.to_string(),
            position: char_position(self.input, token.pos),
            found: token.literal.to_string(),
            expected: expected.to_string(),
        }
    }

    fn invalid_requirement(&self, start: usize, errors: ErrorList) -> SelectorError {
        SelectorError::InvalidRequirement {
            input: self.input.to_string(),
            position: char_position(self.input, start),
            errors,
        }
    }

    fn parse_selector(&mut self) -> Result<Vec<Requirement>> {
        let mut requirements = Vec::new();
        loop {
            let token = self.lookahead(Context::Values);
            match token.kind {
                TokenKind::Identifier | TokenKind::DoesNotExist => {
                    requirements.push(self.parse_requirement()?);
                    let after = self.consume(Context::Values);
                    match after.kind {
                        TokenKind::EndOfString => return Ok(requirements),
                        TokenKind::Comma => {
                            let next = self.lookahead(Context::Values);
                            if !matches!(next.kind, TokenKind::Identifier | TokenKind::DoesNotExist) {
                                return Err(self.syntax_error(next, "identifier after ','"));
                            }
                        }
                        _ => return Err(self.syntax_error(after, "',' or 'end of string'")),
                    }
                }
                TokenKind::EndOfString => return Ok(requirements),
                _ => return Err(self.syntax_error(token, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement> {
        let start = self.lookahead(Context::Values).pos;
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        let (operator, values) = match inferred {
            Some(operator) => (operator, Vec::new()),
            None => {
                let operator = self.parse_operator()?;
                let values = match operator {
                    Operator::In | Operator::NotIn => self.parse_values()?,
                    _ => self.parse_exact_value()?,
                };
                (operator, values.into_iter().collect())
            }
        };
        Requirement::checked(key.to_string(), operator, values, &FieldPath::root())
            .map_err(|errors| self.invalid_requirement(start, errors))
    }

    /// Parses `[!] KEY`; the operator is known when the requirement ends right after the key.
    fn parse_key_and_infer_operator(&mut self) -> Result<(&'a str, Option<Operator>)> {
        let mut token = self.consume(Context::Values);
        let mut operator = None;
        if token.kind == TokenKind::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            token = self.consume(Context::Values);
        }
        if token.kind != TokenKind::Identifier {
            return Err(self.requirement_error(token, "identifier"));
        }
        if let Some(err) = key_error(token.literal) {
            return Err(self.invalid_requirement(token.pos, err.into()));
        }
        let next = self.lookahead(Context::Values).kind;
        if operator.is_none() && matches!(next, TokenKind::EndOfString | TokenKind::Comma) {
            operator = Some(Operator::Exists);
        }
        Ok((token.literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator> {
        let token = self.consume(Context::KeyAndOperator);
        Ok(match token.kind {
            TokenKind::In => Operator::In,
            TokenKind::Equals => Operator::Equals,
            TokenKind::DoubleEquals => Operator::DoubleEquals,
            TokenKind::GreaterThan => Operator::GreaterThan,
            TokenKind::LessThan => Operator::LessThan,
            TokenKind::NotIn => Operator::NotIn,
            TokenKind::NotEquals => Operator::NotEquals,
            _ => return Err(self.requirement_error(token, BINARY_OPERATORS)),
        })
    }

    /// Parses `( values )`.
    fn parse_values(&mut self) -> Result<BTreeSet<String>> {
        let open = self.consume(Context::Values);
        if open.kind != TokenKind::OpenPar {
            return Err(self.requirement_error(open, "'('"));
        }
        let token = self.lookahead(Context::Values);
        match token.kind {
            TokenKind::Identifier | TokenKind::Comma => {
                let values = self.parse_identifiers_list()?;
                let close = self.consume(Context::Values);
                if close.kind != TokenKind::ClosedPar {
                    return Err(self.requirement_error(close, "')'"));
                }
                Ok(values)
            }
            TokenKind::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(self.requirement_error(token, "',', ')' or identifier")),
        }
    }

    /// Parses a comma-separated list whose items may be empty, stopping before `)`.
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>> {
        let mut values = BTreeSet::new();
        loop {
            let token = self.consume(Context::Values);
            match token.kind {
                TokenKind::Identifier => {
                    values.insert(token.literal.to_string());
                    let next = self.lookahead(Context::Values);
                    match next.kind {
                        TokenKind::Comma => continue,
                        TokenKind::ClosedPar => return Ok(values),
                        _ => return Err(self.requirement_error(next, "',' or ')'")),
                    }
                }
                TokenKind::Comma => {
                    // A comma with nothing before it, after it or beside another comma stands
                    // for the empty value.
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    match self.lookahead(Context::Values).kind {
                        TokenKind::ClosedPar => {
                            values.insert(String::new());
                            return Ok(values);
                        }
                        TokenKind::Comma => {
                            values.insert(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(self.requirement_error(token, "',', or identifier")),
            }
        }
    }

    /// Parses the value after `=`, `==`, `!=`, `>` or `<`; a missing value is the empty string.
    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>> {
        let next = self.lookahead(Context::Values);
        if matches!(next.kind, TokenKind::EndOfString | TokenKind::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let token = self.consume(Context::Values);
        if token.kind == TokenKind::Identifier {
            Ok(BTreeSet::from([token.literal.to_string()]))
        } else {
            Err(self.requirement_error(token, "identifier"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::selector::LabelSelector;

    fn parse_ok(input: &str) -> LabelSelector {
        match LabelSelector::parse(input) {
            Ok(sel) => sel,
            Err(err) => panic!("{input:?} should parse: {err}"),
        }
    }

    fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
        Requirement::new(key, op, values.iter().map(|v| v.to_string()).collect()).expect("valid requirement")
    }

    #[test]
    fn good_strings_print_back_without_spaces() {
        for input in ["x=a,y=b,z=c", "", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x", "x>1", "x>1,z<5"]
        {
            assert_eq!(parse_ok(input).to_string(), input.replace(' ', ""), "{input:?}");
        }
    }

    #[test]
    fn bad_strings() {
        for input in [
            "x=a||y=b",
            "x==a==b",
            "!x=a",
            "x<a",
            "x,,y",
            ",x,y",
            "x nott in (y)",
            "a in (xyz),",
            "a in (xyz)b notin ()",
            "a in (xyz abc)",
            "a notin(",
            "a (",
            "(",
            "x>-1",
            "x in",
            "!",
            "x=a,",
            "-x",
            "x/y/z",
            "x=\0",
        ] {
            assert!(LabelSelector::parse(input).is_err(), "{input:?} should not parse");
        }
    }

    #[test]
    fn set_based_parsing() {
        use Operator::*;
        let cases: Vec<(&str, Vec<Requirement>)> = vec![
            ("\rx", vec![req("x", Exists, &[])]),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                vec![req("this-is-a-dns.domain.com/key-with-dash", Exists, &[])],
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                vec![req("0.1.2.domain/99", NotIn, &["10.10.100.1", "tick.tack.clock"])],
            ),
            ("foo  in\t (abc)", vec![req("foo", In, &["abc"])]),
            ("x notin\n (abc)", vec![req("x", NotIn, &["abc"])]),
            ("x  notin\t\t(abc,def)", vec![req("x", NotIn, &["abc", "def"])]),
            ("x in (abc,)", vec![req("x", In, &["", "abc"])]),
            ("x in (abc,abc)", vec![req("x", In, &["abc"])]),
            ("x in ()", vec![req("x", In, &[""])]),
            ("x in (a,,)", vec![req("x", In, &["", "a"])]),
            ("x in (a,,,,,,)", vec![req("x", In, &["", "a"])]),
            ("x in (a,,a,,a,,a,,)", vec![req("x", In, &["", "a"])]),
            ("x notin ( )", vec![req("x", NotIn, &[""])]),
            ("x notin (, a)", vec![req("x", NotIn, &["", "a"])]),
            ("a ", vec![req("a", Exists, &[])]),
            ("a in (x,y,notin, z,in)", vec![req("a", In, &["in", "notin", "x", "y", "z"])]),
            ("notin=in", vec![req("notin", Equals, &["in"])]),
            ("in in (in)", vec![req("in", In, &["in"])]),
            (
                "x notin (abc,,def),bar,z in (),w",
                vec![
                    req("bar", Exists, &[]),
                    req("w", Exists, &[]),
                    req("x", NotIn, &["", "abc", "def"]),
                    req("z", In, &[""]),
                ],
            ),
            (
                "z=1,a=2,m==3,a!=4",
                vec![
                    req("a", Equals, &["2"]),
                    req("a", NotEquals, &["4"]),
                    req("m", DoubleEquals, &["3"]),
                    req("z", Equals, &["1"]),
                ],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_ok(input), LabelSelector::from_requirements(want), "{input:?}");
        }
        assert_eq!(parse_ok("x=a,a=x").to_string(), parse_ok("a=x,x=a").to_string());
    }

    #[test]
    fn matching_through_the_parser() {
        let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let cases = [
            ("", l(&[("x", "y")]), true),
            ("x=y", l(&[("x", "y")]), true),
            ("x=y,z=w", l(&[("x", "y"), ("z", "w")]), true),
            ("x!=y,z!=w", l(&[("x", "z"), ("z", "a")]), true),
            ("notin=in", l(&[("notin", "in")]), true),
            ("x", l(&[("x", "z")]), true),
            ("!x", l(&[("y", "z")]), true),
            ("x>1", l(&[("x", "2")]), true),
            ("x<1", l(&[("x", "0")]), true),
            ("x!=y", l(&[]), true),
            ("x notin (a)", l(&[]), true),
            ("x in (a)", l(&[]), false),
            ("x=z", l(&[]), false),
            ("x=y", l(&[("x", "z")]), false),
            ("x=y,z=w", l(&[("x", "w"), ("z", "w")]), false),
            ("x!=y,z!=w", l(&[("x", "z"), ("z", "w")]), false),
            ("x", l(&[("y", "z")]), false),
            ("!x", l(&[("x", "z")]), false),
            ("x>1", l(&[("x", "0")]), false),
            ("x<1", l(&[("x", "2")]), false),
            ("x>1", l(&[("x", "two")]), false),
            ("x=", l(&[("x", "")]), true),
            ("x=", l(&[]), false),
            ("x in ()", l(&[("x", "")]), true),
            ("foo=bar,foobar=bar,baz=blah", l(&[("foo", "bar"), ("baz", "blah")]), false),
        ];
        for (input, labels, want) in cases {
            assert_eq!(parse_ok(input).matches(&labels), want, "{input:?} on {labels:?}");
        }
    }

    #[test]
    fn errors_name_input_position_and_expectation() {
        let err = |input: &str| match LabelSelector::parse(input) {
            Ok(sel) => panic!("{input:?} parsed as {sel}"),
            Err(err) => err.to_string(),
        };
        assert_eq!(
            err("a = =b"),
            r#"label selector "a = =b": unable to parse requirement: found '=' at position 4, expected: identifier"#
        );
        assert_eq!(
            err("!x=a"),
            r#"label selector "!x=a": found '=' at position 2, expected: ',' or 'end of string'"#
        );
        assert_eq!(
            err("x,,y"),
            r#"label selector "x,,y": found ',' at position 2, expected: identifier after ','"#
        );
        assert_eq!(
            err(",x"),
            r#"label selector ",x": found ',' at position 0, expected: !, identifier, or 'end of string'"#
        );
        assert_eq!(
            err("x ( y"),
            r#"label selector "x ( y": unable to parse requirement: found '(' at position 2, expected: in, notin, =, ==, !=, gt, lt"#
        );
        assert_eq!(
            err("a notin("),
            r#"label selector "a notin(": unable to parse requirement: found '' at position 8, expected: ',', ')' or identifier"#
        );
        assert_eq!(
            err("a in (x y)"),
            r#"label selector "a in (x y)": unable to parse requirement: found 'y' at position 8, expected: ',' or ')'"#
        );
        assert_eq!(
            err("x in (é é)"),
            r#"label selector "x in (é é)": unable to parse requirement: found 'é' at position 8, expected: ',' or ')'"#,
            "positions count characters, not bytes"
        );
        let msg = err("app=ok,tier=-db");
        assert!(
            msg.starts_with(r#"label selector "app=ok,tier=-db": unable to parse requirement at position 7: values[0][tier]: Invalid value: "-db": a valid label must be"#),
            "{msg}"
        );
        let msg = err("x>a");
        assert!(
            msg.contains(
                "values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
            ),
            "{msg}"
        );
        let msg = err("ok, !-bad");
        assert!(msg.starts_with(r#"label selector "ok, !-bad": unable to parse requirement at position 5: key: Invalid value: "-bad": name part must consist of"#), "{msg}");
    }
}
