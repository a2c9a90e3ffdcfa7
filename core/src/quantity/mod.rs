//! Resource quantities ("250m", "1Gi", "1e3"): exact parsing, comparison and canonical output.
//!
//! [`Quantity`] has the semantics of apimachinery's `resource.Quantity`:
//!
//! - **Grammar.** `<sign>? <digits> ('.' <digits>?)? <suffix>` or `<sign>? '.' <digits> <suffix>`,
//!   where the suffix is a binary SI suffix (`Ki Mi Gi Ti Pi Ei`), a decimal SI suffix
//!   (`n u m "" k M G T P E`) or a decimal exponent (`e3`, `E-3`, `e+3`). No whitespace.
//! - **Exactness.** The value is a decimal, never a float. Precision finer than nano (10^-9) is
//!   rounded away from zero ("0.9n" is "1n"): asking for a little of a resource never becomes
//!   asking for none. Binary SI quantities are capped at 2^63-1 ("8Ei" is 2^63-1); decimal
//!   ones are not capped.
//! - **Format.** A quantity remembers which of the three [`Format`]s it was written in and is
//!   printed in that format's canonical form (`Display`): the largest suffix that needs no
//!   fractional digits ("1.5" is "1500m", "1.5Gi" is "1536Mi", "1e3" stays "1e3"). A binary
//!   quantity that is not a whole number, or is smaller than 1024 in magnitude, prints as
//!   decimal SI ("0.5Ki" is "512").
//! - **Round trips.** Printing then parsing gives the value back. The format comes back too,
//!   except for a whole binary value that is not a multiple of 1024: it prints as a plain
//!   integer and so parses back as decimal SI ("62.5Ki" prints "64000", which prints "64k"),
//!   and for binary sums beyond 2^63-1, which parsing caps. Both as in Kubernetes.
//! - **Comparison** is by value: "1Gi" == "1073741824", "1000m" == "1", "1e3" == "1k".
//! - **Serde.** Serialized as the canonical string. Deserialized from a string (surrounding
//!   whitespace ignored, as Kubernetes' JSON decoding does) or from a number. A float arrives
//!   already in binary and is read through its shortest decimal text, so a JSON `1e3` becomes
//!   decimal SI "1k" where Kubernetes would keep "1e3".
//!
//! Where this implementation differs from apimachinery, it does so to stay exact or to
//! reject what Go accepts by accident:
//!
//! - a number must have a digit: Go's scanner takes ".", "-" and "Ki" as zero;
//! - an exponent beyond 32 bits is an error (Go silently truncates it to int32);
//! - a value needing more than 38 significant digits is an error (Go keeps any precision);
//! - a decimal SI value beyond exa prints with an exponent ("1000E" is "1e21"; Go prints "1");
//! - a binary value beyond exbi prints as "1024Ei", not as Go's "1";
//! - [`Quantity::value`] and [`Quantity::milli_value`] saturate instead of overflowing.

mod parse;
mod wire;

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// The most significant decimal digits a quantity holds.
const MAX_DIGITS: usize = 38;

/// 10^38: every mantissa is smaller than this in magnitude.
const MANTISSA_LIMIT: u128 = 10u128.pow(MAX_DIGITS as u32);

/// Binary SI suffixes by power of 1024.
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// Errors from parsing quantities and from arithmetic on them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The input does not follow the quantity grammar.
    #[error("invalid quantity {input:?} at character {position}: {reason}")]
    Invalid {
        /// The whole input.
        input: String,
        /// Index (in characters) of the first character that does not fit the grammar; the
        /// input's length if it ended too early.
        position: usize,
        /// What was expected there.
        reason: &'static str,
    },
    /// The input is well formed but its value cannot be held exactly.
    #[error("quantity {input:?} is out of range: {reason}")]
    OutOfRange {
        /// The whole input.
        input: String,
        /// Which limit it exceeds.
        reason: &'static str,
    },
    /// The exact result of an addition or subtraction needs more than 38 significant digits.
    #[error("{left} {op} {right} does not fit in a quantity (at most 38 significant digits)")]
    Overflow {
        /// `+` or `-`.
        op: &'static str,
        /// The left operand, in canonical form.
        left: String,
        /// The right operand, in canonical form.
        right: String,
    },
}

/// The result type of this module.
pub type Result<T, E = QuantityError> = std::result::Result<T, E>;

/// How a quantity was written, and so how it is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// A decimal exponent: `12e6`, `5E-3`.
    DecimalExponent,
    /// A power-of-two suffix: `12Mi` (12 * 2^20).
    BinarySI,
    /// A decimal SI suffix or none: `12M` (12 * 10^6), `250m`, `3`.
    DecimalSI,
}

/// An exact decimal quantity with the [`Format`] it was written in.
///
/// Equality, ordering and hashing look at the value only, never at the format.
///
/// ```
/// use flotilla_core::quantity::{Format, Quantity};
///
/// let q: Quantity = "1.5Gi".parse().expect("a valid quantity");
/// assert_eq!(q.to_string(), "1536Mi");
/// assert_eq!(q.format(), Format::BinarySI);
/// assert_eq!(q, Quantity::from_value(1_610_612_736, Format::DecimalSI));
/// assert_eq!(Quantity::parse("250m").expect("valid").milli_value(), 250);
/// ```
#[derive(Clone, Copy)]
pub struct Quantity {
    /// The value is `mantissa * 10^exponent`. Normalized: no trailing decimal zeros
    /// (`exponent` is 0 when the value is zero), and `|mantissa| < 10^38`.
    mantissa: i128,
    exponent: i32,
    format: Format,
}

impl Quantity {
    /// Parses a quantity such as `"250m"`, `"1.5Gi"` or `"12e-3"` (see the module docs for the
    /// grammar, rounding and capping). Surrounding whitespace is an error.
    pub fn parse(input: &str) -> Result<Quantity> {
        parse::parse(input)
    }

    /// The quantity `value`, printed in `format` (apimachinery's `NewQuantity`).
    pub fn from_value(value: i64, format: Format) -> Quantity {
        Self::from_i64(value, 0, format)
    }

    /// The quantity `value / 1000` in decimal SI format (apimachinery's `NewMilliQuantity`).
    pub fn from_milli(value: i64) -> Quantity {
        Self::from_i64(value, -3, Format::DecimalSI)
    }

    /// The format this quantity is printed in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// The value rounded away from zero to a whole number ("1.2" is 2, "-1.2" is -2),
    /// saturating at the bounds of `i64`.
    pub fn value(&self) -> i64 {
        self.scaled_value(0)
    }

    /// The value in thousandths, rounded away from zero ("0.1m" is 1), saturating at the
    /// bounds of `i64`.
    pub fn milli_value(&self) -> i64 {
        self.scaled_value(-3)
    }

    /// The exact sum. The result keeps `self`'s format, or takes `other`'s if `self` is zero
    /// (as apimachinery's `Add` does).
    pub fn add(&self, other: &Quantity) -> Result<Quantity> {
        self.combine(other.mantissa, other).ok_or_else(|| self.overflow("+", other))
    }

    /// The exact difference. The result keeps `self`'s format, or takes `other`'s if `self`
    /// is zero (as apimachinery's `Sub` does).
    pub fn sub(&self, other: &Quantity) -> Result<Quantity> {
        // |mantissa| < 10^38, so negating cannot overflow.
        self.combine(-other.mantissa, other).ok_or_else(|| self.overflow("-", other))
    }

    fn from_i64(value: i64, exponent: i32, format: Format) -> Quantity {
        let (mut mantissa, mut exponent) = (i128::from(value), exponent);
        if mantissa == 0 {
            exponent = 0;
        }
        while mantissa != 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        Quantity { mantissa, exponent, format }
    }

    /// Normalizes `±magnitude * 10^exponent`, or `None` if it does not fit.
    fn from_parts(negative: bool, magnitude: u128, exponent: i64, format: Format) -> Option<Quantity> {
        if magnitude == 0 {
            return Some(Quantity { mantissa: 0, exponent: 0, format });
        }
        let (mut magnitude, mut exponent) = (magnitude, exponent);
        while magnitude % 10 == 0 {
            magnitude /= 10;
            exponent += 1;
        }
        if magnitude >= MANTISSA_LIMIT {
            return None;
        }
        let magnitude = i128::try_from(magnitude).ok()?;
        let mantissa = if negative { -magnitude } else { magnitude };
        Some(Quantity { mantissa, exponent: i32::try_from(exponent).ok()?, format })
    }

    /// `self + rhs * 10^other.exponent`, where `rhs` is `other`'s mantissa, possibly negated.
    fn combine(&self, rhs: i128, other: &Quantity) -> Option<Quantity> {
        let format = if self.is_zero() { other.format } else { self.format };
        if rhs == 0 {
            return Some(Quantity { format, ..*self });
        }
        if self.is_zero() {
            return Some(Quantity { mantissa: rhs, exponent: other.exponent, format });
        }
        let exponent = self.exponent.min(other.exponent);
        let a = shifted(self.mantissa.unsigned_abs(), i64::from(self.exponent) - i64::from(exponent))?;
        let b = shifted(rhs.unsigned_abs(), i64::from(other.exponent) - i64::from(exponent))?;
        let (a_negative, b_negative) = (self.mantissa < 0, rhs < 0);
        let (negative, magnitude) = if a_negative == b_negative {
            (a_negative, a.checked_add(b)?)
        } else if a >= b {
            (a_negative, a - b)
        } else {
            (b_negative, b - a)
        };
        Self::from_parts(negative, magnitude, i64::from(exponent), format)
    }

    fn overflow(&self, op: &'static str, other: &Quantity) -> QuantityError {
        QuantityError::Overflow { op, left: self.to_string(), right: other.to_string() }
    }

    /// `ceil(|self| / 10^exponent)` with the sign of `self`, saturating at `i64`'s bounds.
    fn scaled_value(&self, exponent: i64) -> i64 {
        let magnitude = self.mantissa.unsigned_abs();
        let shift = i64::from(self.exponent) - exponent;
        let scaled = if shift >= 0 {
            shifted(magnitude, shift).unwrap_or(u128::MAX)
        } else {
            match u32::try_from(shift.unsigned_abs()).ok().and_then(|s| 10u128.checked_pow(s)) {
                Some(divisor) => magnitude.div_ceil(divisor),
                // The divisor exceeds any mantissa, so a non-zero value rounds to one unit.
                None => u128::from(magnitude != 0),
            }
        };
        if self.mantissa < 0 {
            i64::try_from(-i128::try_from(scaled).unwrap_or(i128::MAX)).unwrap_or(i64::MIN)
        } else {
            i64::try_from(scaled).unwrap_or(i64::MAX)
        }
    }

    /// The value as a whole number, if it is one and fits in a `u128`.
    fn whole_magnitude(&self) -> Option<u128> {
        let shift = u32::try_from(self.exponent).ok()?;
        let magnitude = self.mantissa.unsigned_abs();
        let digits = magnitude.checked_ilog10().map_or(0, |d| d + 1);
        if digits + shift > MAX_DIGITS as u32 {
            return None;
        }
        shifted(magnitude, i64::from(shift))
    }

    /// The canonical text: apimachinery's `CanonicalizeBytes` (see the module docs).
    fn canonical(&self) -> String {
        if self.mantissa == 0 {
            return "0".to_owned();
        }
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let format = match self.format {
            Format::BinarySI => match self.whole_magnitude() {
                Some(mut whole) if whole >= 1024 => {
                    let mut power = 0;
                    while power + 1 < BINARY_SUFFIXES.len() && whole % 1024 == 0 {
                        whole /= 1024;
                        power += 1;
                    }
                    return format!("{sign}{whole}{}", BINARY_SUFFIXES[power]);
                }
                // Fractions, and magnitudes below 1024, print in decimal rather than round.
                _ => Format::DecimalSI,
            },
            other => other,
        };
        // The largest exponent that is a multiple of three and loses no digits.
        let pad = self.exponent.rem_euclid(3);
        let exponent = i64::from(self.exponent) - i64::from(pad);
        let zeros = match pad {
            1 => "0",
            2 => "00",
            _ => "",
        };
        let magnitude = self.mantissa.unsigned_abs();
        let si = match (format, exponent) {
            (Format::DecimalSI, -9) => Some("n"),
            (Format::DecimalSI, -6) => Some("u"),
            (Format::DecimalSI, -3) => Some("m"),
            (_, 0) => Some(""),
            (Format::DecimalSI, 3) => Some("k"),
            (Format::DecimalSI, 6) => Some("M"),
            (Format::DecimalSI, 9) => Some("G"),
            (Format::DecimalSI, 12) => Some("T"),
            (Format::DecimalSI, 15) => Some("P"),
            (Format::DecimalSI, 18) => Some("E"),
            _ => None,
        };
        match si {
            Some(suffix) => format!("{sign}{magnitude}{zeros}{suffix}"),
            None => format!("{sign}{magnitude}{zeros}e{exponent}"),
        }
    }
}

/// `magnitude * 10^shift`, if it fits in a `u128`.
fn shifted(magnitude: u128, shift: i64) -> Option<u128> {
    if magnitude == 0 {
        return Some(0);
    }
    10u128.checked_pow(u32::try_from(shift).ok()?)?.checked_mul(magnitude)
}

impl Default for Quantity {
    /// Zero, in decimal SI format.
    fn default() -> Self {
        Quantity { mantissa: 0, exponent: 0, format: Format::DecimalSI }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for Quantity {
    /// The canonical form, as apimachinery's `Quantity.String()` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.canonical())
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Quantity").field(&self.canonical()).field(&self.format).finish()
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        // Normalized representations are unique per value.
        self.mantissa == other.mantissa && self.exponent == other.exponent
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.mantissa.hash(state);
        self.exponent.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.mantissa.signum(), other.mantissa.signum());
        if a != b || a == 0 {
            return a.cmp(&b);
        }
        let magnitude = compare_magnitudes(self, other);
        if a > 0 { magnitude } else { magnitude.reverse() }
    }
}

/// Compares `|x|` with `|y|`, both non-zero.
fn compare_magnitudes(x: &Quantity, y: &Quantity) -> Ordering {
    let (mx, my) = (x.mantissa.unsigned_abs(), y.mantissa.unsigned_abs());
    let digits = |m: u128| i64::from(m.checked_ilog10().map_or(0, |d| d + 1));
    // The position of the leading digit decides, unless it is the same for both.
    let (lead_x, lead_y) = (digits(mx) + i64::from(x.exponent), digits(my) + i64::from(y.exponent));
    if lead_x != lead_y {
        return lead_x.cmp(&lead_y);
    }
    // Same leading position: the shift is below 38 digits and the shifted mantissa has as
    // many digits as the other one, so it fits; saturation would still order correctly.
    let shift = i64::from(x.exponent) - i64::from(y.exponent);
    let scale = |s: i64| 10u128.saturating_pow(u32::try_from(s).unwrap_or(u32::MAX));
    if shift >= 0 {
        mx.saturating_mul(scale(shift)).cmp(&my)
    } else {
        mx.cmp(&my.saturating_mul(scale(-shift)))
    }
}

#[cfg(test)]
mod tests;
