//! The parser: Kubernetes' quantity grammar, evaluated exactly on decimal digits.
//!
//! The number is kept as a vector of decimal digits until it has been scaled by its suffix
//! and rounded to nano, so arbitrarily long inputs ("0.000000000000000000001Ki") round the
//! way apimachinery's arbitrary-precision `inf.Dec` does, with no intermediate overflow.

use super::{Format, MAX_DIGITS, Quantity, QuantityError, Result};

/// Values finer than 10^-9 are rounded up (away from zero) to the next nano, like
/// apimachinery: asking for a little of a resource must not become asking for none.
const NANO_EXPONENT: i64 = -9;

/// apimachinery caps BinarySI quantities (and only those) at 2^63-1 when parsing.
const BINARY_CAP: u128 = i64::MAX as u128;

/// What the suffix says about the number in front of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Suffix {
    /// Multiply by 10^exponent (the decimal SI suffixes and the `e`/`E` exponent forms).
    Decimal { exponent: i64, format: Format },
    /// Multiply by 2^power (Ki = 2^10 … Ei = 2^60).
    Binary { power: u32 },
}

/// A byte cursor over the input; every byte it accepts is ASCII, so byte offsets are also
/// character indices for error messages.
struct Cursor<'a> {
    input: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn eat_digits(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.bytes.get(start..self.pos).unwrap_or_default()
    }

    fn error(&self, position: usize, reason: &'static str) -> QuantityError {
        QuantityError::Invalid { input: self.input.to_owned(), position, reason }
    }
}

/// Parses `input` with apimachinery's `ParseQuantity` semantics (see the module docs).
pub(super) fn parse(input: &str) -> Result<Quantity> {
    let mut cur = Cursor { input, bytes: input.as_bytes(), pos: 0 };
    if cur.bytes.is_empty() {
        return Err(cur.error(0, "empty quantity"));
    }

    let negative = match cur.peek() {
        Some(b'-') => {
            cur.pos += 1;
            true
        }
        Some(b'+') => {
            cur.pos += 1;
            false
        }
        _ => false,
    };
    let int_digits = cur.eat_digits();
    let mut frac_digits: &[u8] = &[];
    if cur.peek() == Some(b'.') {
        cur.pos += 1;
        frac_digits = cur.eat_digits();
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        // Go's scanner lets a digit-less number through as zero ("." or "-" or "Ki");
        // the documented grammar does not, and neither do we.
        return Err(cur.error(cur.pos, "expected a digit"));
    }

    let suffix = parse_suffix(&mut cur)?;
    if cur.pos < cur.bytes.len() {
        return Err(cur.error(cur.pos, "unexpected character after the suffix"));
    }

    let format = match suffix {
        Suffix::Decimal { format, .. } => format,
        Suffix::Binary { .. } => Format::BinarySI,
    };
    // Digits of int ++ frac, without leading zeros; the value is digits * 10^exponent
    // (times 2^power for a binary suffix).
    let mut digits: Vec<u8> =
        int_digits.iter().chain(frac_digits).map(|b| b - b'0').skip_while(|&d| d == 0).collect();
    if digits.is_empty() {
        return Ok(Quantity { mantissa: 0, exponent: 0, format });
    }
    let frac_len = i64::try_from(frac_digits.len()).unwrap_or(i64::MAX);
    let mut exponent = match suffix {
        Suffix::Decimal { exponent, .. } => exponent.saturating_sub(frac_len),
        Suffix::Binary { power } => {
            mul_small(&mut digits, 1u64 << power);
            frac_len.saturating_neg()
        }
    };

    round_up_to_nano(&mut digits, &mut exponent);
    let trailing = digits.iter().rev().take_while(|&&d| d == 0).count();
    digits.truncate(digits.len() - trailing);
    exponent = exponent.saturating_add(i64::try_from(trailing).unwrap_or(i64::MAX));

    let mut format = format;
    if format == Format::BinarySI {
        let magnitude_digits = i64::try_from(digits.len()).unwrap_or(i64::MAX).saturating_add(exponent);
        if exceeds_binary_cap(&digits, exponent) {
            digits = BINARY_CAP.to_string().bytes().map(|b| b - b'0').collect();
            exponent = 0;
        } else if magnitude_digits <= 0 {
            // A non-zero binary value below one would print as a rounded "0" or "1": apimachinery
            // switches such values to DecimalSI.
            format = Format::DecimalSI;
        }
    }

    let out_of_range = |reason| QuantityError::OutOfRange { input: input.to_owned(), reason };
    if digits.len() > MAX_DIGITS {
        return Err(out_of_range("more than 38 significant digits"));
    }
    let exponent =
        i32::try_from(exponent).map_err(|_| out_of_range("the decimal exponent does not fit in 32 bits"))?;
    let magnitude = digits.iter().fold(0i128, |acc, &d| acc * 10 + i128::from(d));
    let mantissa = if negative { -magnitude } else { magnitude };
    Ok(Quantity { mantissa, exponent, format })
}

/// Parses the suffix at the cursor: one of the SI suffixes, or `e`/`E` followed by a signed
/// integer exponent. "E" alone is exa; "E" followed by anything else is an exponent.
fn parse_suffix(cur: &mut Cursor<'_>) -> Result<Suffix> {
    let decimal = |exponent| Suffix::Decimal { exponent, format: Format::DecimalSI };
    let Some(first) = cur.peek() else {
        return Ok(decimal(0));
    };
    let binary_power = match first {
        b'K' => Some(10),
        b'M' => Some(20),
        b'G' => Some(30),
        b'T' => Some(40),
        b'P' => Some(50),
        b'E' => Some(60),
        _ => None,
    };
    if let Some(power) = binary_power
        && cur.peek_at(1) == Some(b'i')
    {
        cur.pos += 2;
        return Ok(Suffix::Binary { power });
    }
    let single = match first {
        b'n' => Some(-9),
        b'u' => Some(-6),
        b'm' => Some(-3),
        b'k' => Some(3),
        b'M' => Some(6),
        b'G' => Some(9),
        b'T' => Some(12),
        b'P' => Some(15),
        b'E' if cur.peek_at(1).is_none() => Some(18),
        _ => None,
    };
    if let Some(exponent) = single {
        cur.pos += 1;
        return Ok(decimal(exponent));
    }
    match first {
        b'K' => Err(cur.error(cur.pos + 1, "expected 'i' after 'K'")),
        b'e' | b'E' => {
            cur.pos += 1;
            let exponent = parse_exponent(cur)?;
            Ok(Suffix::Decimal { exponent, format: Format::DecimalExponent })
        }
        _ => {
            Err(cur.error(cur.pos, "expected a digit or a suffix (n, u, m, k, M, G, T, P, E, Ki … Ei, e<n>)"))
        }
    }
}

/// The signed integer after `e`/`E`. apimachinery reads it as an int64 and then silently
/// truncates it to int32; we reject what does not fit in an int32 instead.
fn parse_exponent(cur: &mut Cursor<'_>) -> Result<i64> {
    let negative = match cur.peek() {
        Some(b'-') => {
            cur.pos += 1;
            true
        }
        Some(b'+') => {
            cur.pos += 1;
            false
        }
        _ => false,
    };
    let start = cur.pos;
    let digits = cur.eat_digits();
    if digits.is_empty() {
        return Err(cur.error(cur.pos, "expected the exponent's digits"));
    }
    let magnitude =
        digits.iter().fold(0i64, |acc, &b| acc.saturating_mul(10).saturating_add(i64::from(b - b'0')));
    let value = if negative { -magnitude } else { magnitude };
    if i32::try_from(value).is_err() {
        return Err(cur.error(start, "exponent does not fit in 32 bits"));
    }
    Ok(value)
}

/// `digits *= factor`, digits most significant first.
fn mul_small(digits: &mut Vec<u8>, factor: u64) {
    let mut carry: u128 = 0;
    for d in digits.iter_mut().rev() {
        let v = u128::from(*d) * u128::from(factor) + carry;
        *d = (v % 10) as u8;
        carry = v / 10;
    }
    let mut head = Vec::new();
    while carry > 0 {
        head.push((carry % 10) as u8);
        carry /= 10;
    }
    head.reverse();
    digits.splice(0..0, head);
}

/// Rounds `digits * 10^exponent` away from zero to a multiple of 10^-9.
fn round_up_to_nano(digits: &mut Vec<u8>, exponent: &mut i64) {
    if *exponent >= NANO_EXPONENT {
        return;
    }
    let dropped = usize::try_from(NANO_EXPONENT - *exponent).unwrap_or(usize::MAX);
    let keep = digits.len().saturating_sub(dropped);
    let sticky = digits.get(keep..).is_some_and(|tail| tail.iter().any(|&d| d != 0));
    digits.truncate(keep);
    *exponent = NANO_EXPONENT;
    if sticky {
        increment(digits);
    }
}

/// `digits += 1`, digits most significant first.
fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == 9 {
            *d = 0;
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, 1);
}

/// Whether `digits * 10^exponent` (no leading zeros, non-empty) is above 2^63-1.
fn exceeds_binary_cap(digits: &[u8], exponent: i64) -> bool {
    let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    if len.saturating_add(exponent) > 19 {
        return true; // at least 10^19
    }
    // Below 10^19 with exponent >= -9: at most 28 digits, so everything fits in a u128.
    let mantissa = digits.iter().fold(0u128, |acc, &d| acc * 10 + u128::from(d));
    let Ok(shift) = u32::try_from(exponent.unsigned_abs()) else {
        return false;
    };
    let scale = 10u128.pow(shift);
    if exponent >= 0 { mantissa * scale > BINARY_CAP } else { mantissa > BINARY_CAP * scale }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(input: &str) -> (usize, &'static str) {
        match parse(input) {
            Err(QuantityError::Invalid { input: got, position, reason }) => {
                assert_eq!(got, input);
                (position, reason)
            }
            other => panic!("{input:?}: expected a syntax error, got {other:?}"),
        }
    }

    fn parts(input: &str) -> (i128, i32, Format) {
        let q = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        (q.mantissa, q.exponent, q.format)
    }

    #[test]
    fn rejects_malformed_input_at_the_offending_character() {
        let cases = [
            ("", 0),
            (" 1", 0),
            ("1 ", 1),
            ("--1", 1),
            ("+-1", 1),
            ("1.2.3", 3),
            ("1.1.M", 3),
            ("1Gb", 2),
            ("1+1.0M", 1),
            ("0.1mi", 4),
            ("0.1am", 3),
            ("aoeu", 0),
            (".5i", 2),
            ("1i", 1),
            ("-3.01i", 5),
            ("-3.01e-", 7),
            ("1e", 2),
            ("1e+", 3),
            ("1E-", 3),
            ("1K", 2),
            ("1Ki3", 3),
            ("1kk", 2),
            ("1e3e", 3),
            ("1ee3", 2),
            ("1Mi ", 3),
            (".", 1),
            ("-", 1),
            ("+", 1),
            ("Ki", 0),
            ("1\u{e9}", 1),
            ("1e2147483648", 2),
            ("1e-2147483649", 3),
        ];
        for (input, position) in cases {
            let (got, reason) = invalid(input);
            assert_eq!(got, position, "{input:?}: {reason}");
        }
    }

    #[test]
    fn error_message_names_input_and_position() {
        let err = parse("1Gb").expect_err("not a quantity");
        assert_eq!(
            err.to_string(),
            "invalid quantity \"1Gb\" at character 2: unexpected character after the suffix"
        );
    }

    #[test]
    fn keeps_exact_values_and_formats() {
        use Format::*;
        // (input, normalized mantissa, exponent, format); mirrors apimachinery's parse table.
        let cases = [
            ("0", 0, 0, DecimalSI),
            ("0Ki", 0, 0, BinarySI),
            ("-0.000e5", 0, 0, DecimalExponent),
            ("1Ki", 1024, 0, BinarySI),
            ("7Mi", 7 * 1024 * 1024, 0, BinarySI),
            ("3Ei", 3 << 60, 0, BinarySI),
            ("5n", 5, -9, DecimalSI),
            ("50k", 5, 4, DecimalSI),
            ("300T", 3, 14, DecimalSI),
            ("1E", 1, 18, DecimalSI),
            ("1E-3", 1, -3, DecimalExponent),
            ("1.3E+6", 13, 5, DecimalExponent),
            ("100.035k", 100035, 0, DecimalSI),
            ("0.00050k", 5, -1, DecimalSI),
            ("0.5e-2", 5, -3, DecimalExponent),
            ("6.987654321G", 6987654321, 0, DecimalSI),
            ("1.01E", 101, 16, DecimalSI),
            ("100.035Ki", 10243584, -2, BinarySI),
            ("0.05Gi", 536870912, -1, BinarySI),
            ("0.025Ti", 274877906944, -1, BinarySI),
            (".0001k", 1, -1, DecimalSI),
            ("1.", 1, 0, DecimalSI),
            ("1.G", 1, 9, DecimalSI),
            ("+1k", 1, 3, DecimalSI),
            ("-1.5", -15, -1, DecimalSI),
            ("00012e0003", 12, 3, DecimalExponent),
            ("18446744073709551616", 18446744073709551616, 0, DecimalSI),
        ];
        for (input, mantissa, exponent, format) in cases {
            assert_eq!(parts(input), (mantissa, exponent, format), "{input:?}");
        }
    }

    #[test]
    fn rounds_finer_than_nano_away_from_zero() {
        use Format::*;
        let cases = [
            ("3.001n", 4, -9, DecimalSI),
            ("-3.001n", -4, -9, DecimalSI),
            ("1.1E-9", 2, -9, DecimalExponent),
            ("0.0000000001", 1, -9, DecimalSI),
            ("0.00000000050", 1, -9, DecimalSI),
            ("0.9n", 1, -9, DecimalSI),
            ("0.00000012345", 124, -9, DecimalSI),
            ("0.00000012354", 124, -9, DecimalSI),
            ("9.9999999999", 1, 1, DecimalSI),
            ("1e-2147483648", 1, -9, DecimalExponent),
            ("0.0000000000000000000000000000000000000000000000000001", 1, -9, DecimalSI),
            // Binary values below one become DecimalSI.
            ("0.000000000001Ki", 2, -9, DecimalSI),
            ("-.001Ki", -1024, -3, BinarySI),
        ];
        for (input, mantissa, exponent, format) in cases {
            assert_eq!(parts(input), (mantissa, exponent, format), "{input:?}");
        }
    }

    #[test]
    fn caps_binary_quantities_at_int64_max() {
        let max = i128::from(i64::MAX);
        for input in
            ["8Ei", "9Ei", "9223372036854775807Ki", "1024Ei", "99999999999999999999999999999999999999999Ki"]
        {
            assert_eq!(parts(input), (max, 0, Format::BinarySI), "{input:?}");
            assert_eq!(parts(&format!("-{input}")), (-max, 0, Format::BinarySI), "-{input:?}");
        }
        // Just under the cap stays exact.
        assert_eq!(parts("8388607.999999999Ti"), (9223372036854774708488372224, -9, Format::BinarySI));
        // Decimal quantities are not capped.
        assert_eq!(parts("9223372036854775808"), (9223372036854775808, 0, Format::DecimalSI));
        assert_eq!(parts("1e30"), (1, 30, Format::DecimalExponent));
    }

    #[test]
    fn rejects_values_it_cannot_hold_exactly() {
        for input in [
            "123456789012345678901234567890123456789",
            "1.000000000000000000000000000000000000001e30",
            "10e2147483647",
        ] {
            assert!(matches!(parse(input), Err(QuantityError::OutOfRange { .. })), "{input:?}");
        }
        // 38 significant digits still fit, and trailing zeros are not significant.
        assert!(parse("12345678901234567890123456789012345678").is_ok());
        assert!(parse("100000000000000000000000000000000000000000000000000").is_ok());
    }

    #[test]
    fn digit_helpers() {
        let mut d = vec![9, 9];
        increment(&mut d);
        assert_eq!(d, [1, 0, 0]);
        let mut d = vec![1, 5];
        mul_small(&mut d, 1 << 60);
        assert_eq!(d, (15u128 << 60).to_string().bytes().map(|b| b - b'0').collect::<Vec<_>>());
    }
}
