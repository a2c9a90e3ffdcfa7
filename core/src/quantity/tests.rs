use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use proptest::prelude::*;

use super::*;

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn hash_of(q: &Quantity) -> u64 {
    let mut h = DefaultHasher::new();
    q.hash(&mut h);
    h.finish()
}

/// (input, what apimachinery's `Quantity.String()` prints for it). The pairs come from
/// apimachinery's own tests (TestQuantityParse, TestQuantityString, TestQuantityParseEmit)
/// or follow directly from its canonicalization rules.
const CANONICAL: &[(&str, &str)] = &[
    // Zero, whatever its spelling or format.
    ("0", "0"),
    ("00", "0"),
    ("-0", "0"),
    ("0Ki", "0"),
    ("0e3", "0"),
    ("0.000n", "0"),
    // Decimal SI.
    ("1", "1"),
    ("-1", "-1"),
    ("+1k", "1k"),
    ("1000m", "1"),
    ("0.5", "500m"),
    ("-0.5", "-500m"),
    ("1.5", "1500m"),
    ("1.08", "1080m"),
    ("1080000000n", "1080m"),
    ("5000m", "5"),
    ("1000u", "1m"),
    ("1000000n", "1m"),
    ("1n", "1n"),
    ("0.9n", "1n"),
    ("3.001n", "4n"),
    ("0.00000012345", "124n"),
    ("1.5k", "1500"),
    ("0.0005k", "500m"),
    ("100.035k", "100035"),
    ("50k", "50k"),
    ("1000M", "1G"),
    ("0.001T", "1G"),
    ("100M", "100M"),
    ("40T", "40T"),
    ("2.5P", "2500T"),
    ("1E", "1E"),
    ("12E", "12E"),
    ("1.01E", "1010P"),
    ("1.", "1"),
    ("1.G", "1G"),
    ("18446744073709551616", "18446744073709551616"),
    // Binary SI: whole multiples of 1024 keep a binary suffix; the rest prints as decimal SI.
    ("1Ki", "1Ki"),
    ("1Mi", "1Mi"),
    ("1Gi", "1Gi"),
    ("1024Ki", "1Mi"),
    ("1024Mi", "1Gi"),
    ("1024Gi", "1Ti"),
    ("1.5Gi", "1536Mi"),
    ("-1.5Gi", "-1536Mi"),
    ("300Mi", "300Mi"),
    ("307200Ki", "300Mi"),
    ("1025024Mi", "1001Gi"),
    ("0.5Mi", "512Ki"),
    ("0.5Ki", "512"),
    ("1.5Ki", "1536"),
    ("0.1Ki", "102400m"),
    (".001Ki", "1024m"),
    (".000001Ki", "1024u"),
    (".000000001Ki", "1024n"),
    (".000000000001Ki", "2n"),
    ("100.035Ki", "102435840m"),
    ("1Ei", "1Ei"),
    ("9Ei", "9223372036854775807"),
    ("-9Ei", "-9223372036854775807"),
    ("1024Ei", "9223372036854775807"),
    // Decimal exponent.
    ("1e3", "1e3"),
    ("1E3", "1e3"),
    ("10e2", "1e3"),
    ("12e-3", "12e-3"),
    ("-12e-3", "-12e-3"),
    ("1e9", "1e9"),
    (".001e12", "1e9"),
    ("0.001e0", "1e-3"),
    ("1000e-12", "1e-9"),
    ("1E-3", "1e-3"),
    ("1e0", "1"),
    ("1e1", "10"),
    ("1.3E+6", "1300e3"),
    ("1.53E12", "1530e9"),
    ("1.7E18", "1700e15"),
    ("0.5e0", "500e-3"),
    ("0.5e-9", "1e-9"),
    ("1.1E-9", "2e-9"),
    ("1e30", "1e30"),
];

#[test]
fn canonical_forms_match_kubernetes() {
    for &(input, canonical) in CANONICAL {
        let parsed = q(input);
        assert_eq!(parsed.to_string(), canonical, "{input:?}");
        // The canonical form is a fixed point, with the same value.
        let again = q(canonical);
        assert_eq!(again, parsed, "{input:?} -> {canonical:?}");
        assert_eq!(again.to_string(), canonical, "{input:?} -> {canonical:?}");
    }
}

#[test]
fn large_exponents_print_without_losing_the_value() {
    // apimachinery prints "1000E" as "1" (no suffix exists for 10^21); we keep the value.
    assert_eq!(q("1000E").to_string(), "1e21");
    assert_eq!(q("1000E"), q("1e21"));
    // apimachinery would print 2^70 in binary format as "1"; we stop at the largest suffix.
    let mut big = Quantity::from_value(1 << 62, Format::BinarySI);
    for _ in 0..8 {
        big = big.add(&big).expect("71 bits fit");
    }
    assert_eq!(big.format(), Format::BinarySI);
    assert_eq!(big.to_string(), "1024Ei");
}

#[test]
fn binary_values_printed_as_plain_integers_reparse_as_decimal() {
    // Kubernetes prints "62.5Ki" as "64000" (not a multiple of 1024, yet whole): the value
    // survives a round trip, the format does not.
    let q1 = q("62.5Ki");
    assert_eq!(q1.to_string(), "64000");
    assert_eq!(q("64000"), q1);
    assert_eq!(q("64000").to_string(), "64k");
}

#[test]
fn binary_sums_beyond_the_cap_print_but_reparse_capped() {
    // As in Kubernetes: arithmetic is not capped, parsing is.
    let sum = q("8Ei").add(&q("1")).expect("fits");
    assert_eq!(sum.to_string(), "8Ei");
    assert_eq!(q(&sum.to_string()), q("9223372036854775807"));
    assert!(!survives_reparse(&sum));
    assert!(survives_reparse(&q("8Ei")));
}

#[test]
fn compares_by_value() {
    let equal = [
        ("1Gi", "1073741824"),
        ("1000m", "1"),
        ("1e3", "1k"),
        ("1m", "1e-3"),
        ("0", "-0Ki"),
        ("0.5Ki", "512"),
        ("1.0", "1"),
    ];
    for (a, b) in equal {
        assert_eq!(q(a), q(b), "{a} == {b}");
        assert_eq!(q(a).cmp(&q(b)), Ordering::Equal, "{a} == {b}");
        assert_eq!(hash_of(&q(a)), hash_of(&q(b)), "hash({a}) == hash({b})");
    }
    let ascending = [
        "-1e30",
        "-9Ei",
        "-1Ki",
        "-1000",
        "-1",
        "-999m",
        "-1n",
        "0",
        "1n",
        "999999999n",
        "1",
        "1001m",
        "1000",
        "1Ki",
        "1025",
        "1e18",
        "1Ei",
        "9Ei",
        "9223372036854775808",
        "1e30",
        "1.000000001e30",
    ];
    for (i, a) in ascending.iter().enumerate() {
        for (j, b) in ascending.iter().enumerate() {
            assert_eq!(q(a).cmp(&q(b)), i.cmp(&j), "{a} vs {b}");
        }
    }
}

#[test]
fn accessors_round_away_from_zero_and_saturate() {
    let cases = [
        ("0", 0, 0),
        ("1", 1, 1000),
        ("1.2", 2, 1200),
        ("-1.2", -2, -1200),
        ("0.1m", 1, 1),
        ("-0.1m", -1, -1),
        ("1n", 1, 1),
        ("250m", 1, 250),
        ("1Ki", 1024, 1_024_000),
        ("9223372036854775807", i64::MAX, i64::MAX),
        ("9223372036854775808", i64::MAX, i64::MAX),
        ("-9223372036854775808", i64::MIN, i64::MIN),
        ("-9223372036854775809", i64::MIN, i64::MIN),
        ("9223372036854775.807", 9223372036854776, i64::MAX),
        ("1e30", i64::MAX, i64::MAX),
        ("-1e2147483647", i64::MIN, i64::MIN),
        ("1e-2147483648", 1, 1),
    ];
    for (input, value, milli) in cases {
        assert_eq!(q(input).value(), value, "value({input})");
        assert_eq!(q(input).milli_value(), milli, "milli_value({input})");
    }
    assert!(q("0Mi").is_zero());
    assert!(!q("1n").is_zero());
    assert!(q("-1n").is_negative());
    assert!(!q("-0").is_negative());
}

#[test]
fn constructors_match_new_quantity() {
    let cases = [
        (Quantity::from_milli(1), "1m"),
        (Quantity::from_milli(1000), "1"),
        (Quantity::from_milli(1_234_000), "1234"),
        (Quantity::from_milli(-1500), "-1500m"),
        (Quantity::from_value(1, Format::DecimalSI), "1"),
        (Quantity::from_value(1000, Format::DecimalSI), "1k"),
        (Quantity::from_value(1_234_000, Format::DecimalSI), "1234k"),
        (Quantity::from_value(1024, Format::BinarySI), "1Ki"),
        (Quantity::from_value(1_048_576, Format::BinarySI), "1Mi"),
        (Quantity::from_value(1000, Format::BinarySI), "1k"),
        (Quantity::from_value(2000, Format::BinarySI), "2000"),
        (Quantity::from_value(1_000_000, Format::DecimalExponent), "1e6"),
        (Quantity::from_value(i64::MIN, Format::DecimalSI), "-9223372036854775808"),
        (Quantity::default(), "0"),
    ];
    for (quantity, canonical) in cases {
        assert_eq!(quantity.to_string(), canonical);
    }
    assert_eq!(Quantity::from_value(0, Format::BinarySI).format(), Format::BinarySI);
    assert_eq!(Quantity::from_milli(i64::MIN).milli_value(), i64::MIN);
}

#[test]
fn arithmetic_is_exact_and_keeps_the_left_format() {
    let add = |a: &str, b: &str| q(a).add(&q(b)).unwrap_or_else(|e| panic!("{e}"));
    let sub = |a: &str, b: &str| q(a).sub(&q(b)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(add("1Gi", "512Mi").to_string(), "1536Mi");
    assert_eq!(add("1", "500m").to_string(), "1500m");
    assert_eq!(add("1e3", "1").to_string(), "1001");
    assert_eq!(add("1e3", "1").format(), Format::DecimalExponent);
    assert_eq!(add("1Ki", "1k").to_string(), "2024");
    assert_eq!(add("1Ki", "1k").format(), Format::BinarySI);
    assert_eq!(add("1k", "1Ki").to_string(), "2024");
    assert_eq!(add("1k", "24").to_string(), "1024");
    assert_eq!(add("1k", "-1k").format(), Format::DecimalSI);
    assert_eq!(add("0.1", "0.2"), q("300m"));
    assert_eq!(sub("100m", "1").to_string(), "-900m");
    assert_eq!(sub("1", "1n").to_string(), "999999999n");
    assert_eq!(sub("2Gi", "1Gi").to_string(), "1Gi");
    assert_eq!(add("-1e30", "1e30"), q("0"));
    // A zero left side takes the right side's format.
    assert_eq!(add("0", "1Ki").to_string(), "1Ki");
    assert_eq!(sub("0", "1Ki").to_string(), "-1Ki");
    assert_eq!(sub("1Ki", "1Ki").format(), Format::BinarySI);
    assert_eq!(add("0", "0Ki").format(), Format::BinarySI);
    // 38 significant digits fit; 39 do not.
    assert_eq!(add("1e37", "1"), q("10000000000000000000000000000000000001"));
    assert_eq!(add("99999999999999999999999999999999999999", "1"), q("1e38"));
    let err = q("1e37").add(&q("1n")).expect_err("47 digits");
    assert_eq!(err.to_string(), "10e36 + 1n does not fit in a quantity (at most 38 significant digits)");
    assert!(q("1e2147483647").sub(&q("1e-2147483648")).is_err());
}

/// The value an input string denotes, in nano units, computed independently of the parser
/// with plain integer arithmetic: rounded up to nano, binary values capped at 2^63-1.
fn model_nano(sign: i128, int: &str, frac: &str, suffix: &Suffix) -> i128 {
    let digits: i128 = format!("0{int}{frac}").parse().expect("at most 8 digits");
    let frac_len = i32::try_from(frac.len()).expect("short");
    let (numerator, denominator) = match *suffix {
        Suffix::Decimal(exponent) => {
            let scale = exponent + 9 - frac_len;
            if scale >= 0 {
                (digits * 10i128.pow(scale.unsigned_abs()), 1)
            } else {
                (digits, 10i128.pow(scale.unsigned_abs()))
            }
        }
        Suffix::Binary(power) => ((digits << power) * 1_000_000_000, 10i128.pow(frac_len.unsigned_abs())),
    };
    let mut nano = (numerator + denominator - 1) / denominator;
    if matches!(suffix, Suffix::Binary(_)) {
        nano = nano.min(i128::from(i64::MAX) * 1_000_000_000);
    }
    sign * nano
}

fn ceil_away(nano: i128, unit: i128) -> i64 {
    let magnitude = (nano.abs() + unit - 1) / unit;
    let signed = if nano < 0 { -magnitude } else { magnitude };
    i64::try_from(signed).unwrap_or(if nano < 0 { i64::MIN } else { i64::MAX })
}

#[derive(Clone, Debug)]
enum Suffix {
    Decimal(i32),
    Binary(u32),
}

#[derive(Clone, Debug)]
struct Input {
    text: String,
    nano: i128,
}

fn suffix_strategy() -> impl Strategy<Value = (String, Suffix)> {
    let si = [
        ("n", -9),
        ("u", -6),
        ("m", -3),
        ("", 0),
        ("k", 3),
        ("M", 6),
        ("G", 9),
        ("T", 12),
        ("P", 15),
        ("E", 18),
    ];
    let binary = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40), ("Pi", 50), ("Ei", 60)];
    prop_oneof![
        proptest::sample::select(si.to_vec()).prop_map(|(s, e)| (s.to_owned(), Suffix::Decimal(e))),
        proptest::sample::select(binary.to_vec()).prop_map(|(s, p)| (s.to_owned(), Suffix::Binary(p))),
        (prop::bool::ANY, -12i32..=18, prop::bool::ANY).prop_map(|(upper, e, plus)| {
            let letter = if upper { "E" } else { "e" };
            let sign = if plus && e >= 0 { "+" } else { "" };
            (format!("{letter}{sign}{e}"), Suffix::Decimal(e))
        }),
    ]
}

fn input_strategy() -> impl Strategy<Value = Input> {
    let sign = prop_oneof![Just(("", 1i128)), Just(("+", 1)), Just(("-", -1))];
    (sign, "[0-9]{0,4}", prop::option::of("[0-9]{0,4}"), suffix_strategy())
        .prop_filter("a number needs a digit", |(_, int, frac, _)| {
            !int.is_empty() || frac.as_ref().is_some_and(|f| !f.is_empty())
        })
        .prop_map(|((sign_text, sign), int, frac, (suffix_text, suffix))| {
            let frac = frac.map_or(String::new(), |f| format!(".{f}"));
            let nano = model_nano(sign, &int, frac.trim_start_matches('.'), &suffix);
            Input { text: format!("{sign_text}{int}{frac}{suffix_text}"), nano }
        })
}

/// Printing and parsing gives the value back, and printing is idempotent: at once, or, for a
/// binary value that prints as a plain integer ("62.5Ki" prints "64000", which parses as
/// decimal SI and then prints "64k"), after one more round, exactly as in Kubernetes.
fn assert_canonical_fixed_point(q: &Quantity) -> std::result::Result<(), TestCaseError> {
    let reparse =
        |text: &str| Quantity::parse(text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")));
    let text = q.to_string();
    let again = reparse(&text)?;
    prop_assert_eq!(&again, q, "{:?} does not parse back to {:?}", text, q);
    prop_assert_eq!(hash_of(&again), hash_of(q));
    let text2 = again.to_string();
    if text2 != text {
        let plain_integer = text.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit());
        prop_assert!(q.format() == Format::BinarySI && plain_integer, "{:?} then {:?}", text, text2);
        prop_assert_eq!(reparse(&text2)?.to_string(), text2);
    }
    Ok(())
}

/// Whether printing and parsing gives the value back. Not for binary values beyond 2^63-1
/// (only arithmetic makes them): parsing caps them, in Kubernetes too.
fn survives_reparse(q: &Quantity) -> bool {
    let cap = Quantity::from_value(i64::MAX, Format::DecimalSI);
    q.format() != Format::BinarySI || (q <= &cap && q >= &Quantity::from_value(-i64::MAX, Format::DecimalSI))
}

proptest! {
    // Keep failures in the test output rather than in files next to the sources.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        if let Ok(q) = Quantity::parse(&s) {
            assert_canonical_fixed_point(&q)?;
        }
    }

    #[test]
    fn parse_never_panics_on_near_misses(s in "[-+ ]?[0-9.]{0,45}[eEinumkKMGTP+-]{0,3}[0-9]{0,12}") {
        match Quantity::parse(&s) {
            Ok(q) => assert_canonical_fixed_point(&q)?,
            Err(QuantityError::Invalid { position, .. }) => prop_assert!(position <= s.chars().count()),
            Err(_) => {}
        }
    }

    #[test]
    fn values_agree_with_an_exact_model(a in input_strategy(), b in input_strategy()) {
        let qa = Quantity::parse(&a.text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let qb = Quantity::parse(&b.text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        assert_canonical_fixed_point(&qa)?;
        // The value is the model's (nano units written with the "n" suffix).
        prop_assert_eq!(qa, q(&format!("{}n", a.nano)), "{} is not {}n", a.text, a.nano);
        prop_assert_eq!(qa.cmp(&qb), a.nano.cmp(&b.nano), "{} vs {}", a.text, b.text);
        prop_assert_eq!(qa == qb, a.nano == b.nano);
        prop_assert_eq!(qa.value(), ceil_away(a.nano, 1_000_000_000));
        prop_assert_eq!(qa.milli_value(), ceil_away(a.nano, 1_000_000));
        prop_assert_eq!(qa.is_zero(), a.nano == 0);

        let sum = qa.add(&qb).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(sum, q(&format!("{}n", a.nano + b.nano)));
        prop_assert_eq!(sum.format(), if qa.is_zero() { qb.format() } else { qa.format() });
        if survives_reparse(&sum) {
            assert_canonical_fixed_point(&sum)?;
        }
        let difference = qa.sub(&qb).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(difference, q(&format!("{}n", a.nano - b.nano)));
        if survives_reparse(&difference) {
            assert_canonical_fixed_point(&difference)?;
        }
    }

    #[test]
    fn constructors_round_trip(v in any::<i64>(), format in prop_oneof![
        Just(Format::DecimalSI), Just(Format::BinarySI), Just(Format::DecimalExponent)
    ]) {
        let value = Quantity::from_value(v, format);
        prop_assert_eq!(value.value(), v);
        assert_canonical_fixed_point(&value)?;
        let milli = Quantity::from_milli(v);
        prop_assert_eq!(milli.milli_value(), v);
        assert_canonical_fixed_point(&milli)?;
        prop_assert_eq!(value.cmp(&milli), v.cmp(&0));
    }
}
