//! The label selector lexer, with the token rules of Kubernetes' `labels.Lexer`.
//!
//! Whitespace is space, tab, CR and LF. The special characters `= ! ( ) , > <` form operators,
//! longest match first (`==`, `!=`). Any other run of characters is an identifier, except the
//! keywords `in` and `notin`. Every token records the byte offset where it starts.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: TokenKind,
    pub(crate) literal: &'a str,
    /// Byte offset of the token's first character in the input.
    pub(crate) pos: usize,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits `input` into tokens, ending with one `EndOfString` token.
///
/// Every split point is at an ASCII byte, so every literal is a valid `&str` slice.
pub(crate) fn tokenize(input: &str) -> Vec<Token<'_>> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while pos < bytes.len() && is_whitespace(bytes[pos]) {
            pos += 1;
        }
        let start = pos;
        let Some(&first) = bytes.get(pos) else {
            tokens.push(Token { kind: TokenKind::EndOfString, literal: "", pos });
            return tokens;
        };
        let kind = if is_special(first) {
            let two = bytes.get(pos + 1).map(|&second| (first, second));
            let (kind, len) = match two {
                Some((b'=', b'=')) => (TokenKind::DoubleEquals, 2),
                Some((b'!', b'=')) => (TokenKind::NotEquals, 2),
                _ => {
                    let kind = match first {
                        b'=' => TokenKind::Equals,
                        b'!' => TokenKind::DoesNotExist,
                        b'(' => TokenKind::OpenPar,
                        b')' => TokenKind::ClosedPar,
                        b',' => TokenKind::Comma,
                        b'>' => TokenKind::GreaterThan,
                        _ => TokenKind::LessThan,
                    };
                    (kind, 1)
                }
            };
            pos += len;
            kind
        } else {
            while pos < bytes.len() && !is_special(bytes[pos]) && !is_whitespace(bytes[pos]) {
                pos += 1;
            }
            match &input[start..pos] {
                "in" => TokenKind::In,
                "notin" => TokenKind::NotIn,
                _ => TokenKind::Identifier,
            }
        };
        tokens.push(Token { kind, literal: &input[start..pos], pos: start });
    }
}

#[cfg(test)]
mod tests {
    use super::TokenKind::*;
    use super::*;

    fn kinds(input: &str) -> Vec<TokenKind> {
        tokenize(input).into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn single_tokens() {
        let cases = [
            ("", EndOfString),
            (",", Comma),
            ("notin", NotIn),
            ("in", In),
            ("=", Equals),
            ("==", DoubleEquals),
            (">", GreaterThan),
            ("<", LessThan),
            ("!", DoesNotExist),
            ("!=", NotEquals),
            ("(", OpenPar),
            (")", ClosedPar),
            ("~", Identifier),
            ("||", Identifier),
        ];
        for (input, kind) in cases {
            let tokens = tokenize(input);
            assert_eq!(tokens[0].kind, kind, "{input:?}");
            assert_eq!(tokens[0].literal, input);
        }
    }

    #[test]
    fn sequences() {
        let cases: [(&str, &[TokenKind]); 10] = [
            ("key in ( value )", &[Identifier, In, OpenPar, Identifier, ClosedPar]),
            ("key notin ( value )", &[Identifier, NotIn, OpenPar, Identifier, ClosedPar]),
            (
                "key in ( value1, value2 )",
                &[Identifier, In, OpenPar, Identifier, Comma, Identifier, ClosedPar],
            ),
            ("key", &[Identifier]),
            ("!key", &[DoesNotExist, Identifier]),
            ("()", &[OpenPar, ClosedPar]),
            ("x in (),y", &[Identifier, In, OpenPar, ClosedPar, Comma, Identifier]),
            ("== != (), = notin", &[DoubleEquals, NotEquals, OpenPar, ClosedPar, Comma, Equals, NotIn]),
            ("key>2", &[Identifier, GreaterThan, Identifier]),
            (
                "a===b!!=c=!d",
                &[
                    Identifier,
                    DoubleEquals,
                    Equals,
                    Identifier,
                    DoesNotExist,
                    NotEquals,
                    Identifier,
                    Equals,
                    DoesNotExist,
                    Identifier,
                ],
            ),
        ];
        for (input, want) in cases {
            let mut got = kinds(input);
            assert_eq!(got.pop(), Some(EndOfString));
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn records_positions_and_keeps_unicode_whole() {
        let tokens = tokenize(" \tké=v\r\n,in");
        let got: Vec<(TokenKind, &str, usize)> = tokens.iter().map(|t| (t.kind, t.literal, t.pos)).collect();
        assert_eq!(
            got,
            vec![
                (Identifier, "ké", 2),
                (Equals, "=", 5),
                (Identifier, "v", 6),
                (Comma, ",", 9),
                (In, "in", 10),
                (EndOfString, "", 12)
            ]
        );
    }
}
