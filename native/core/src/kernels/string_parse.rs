//! Spark's parsing of strings into numbers and booleans, value by value, exactly as
//! `Cast` does outside ANSI mode: `UTF8String.toLong` for integers, `new
//! java.math.BigDecimal(s.trim)` for decimals and `StringUtils.isTrueString` for booleans.
//! `None` is Spark's null (malformed input or overflow).

use super::decimal::MAX_PRECISION;

/// Spark's `UTF8String.isWhitespaceOrISOControl` applied to one byte, as its `trimAll` and
/// `toLong` do: ASCII control characters, space and DEL (bytes of multi-byte characters are
/// negative in Java and never match).
pub fn is_spark_trim_byte(b: u8) -> bool {
    b <= 0x20 || b == 0x7f
}

/// `s` without leading and trailing bytes for which [`is_spark_trim_byte`] holds.
pub fn trim_all(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !is_spark_trim_byte(*b))
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_spark_trim_byte(*b))
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// Spark's `UTF8String.toLong(allowDecimal = true)`: optional sign, decimal digits, and an
/// optional fraction of digits that is truncated (`"1.9"` is 1, `"."` is 0); nothing else
/// is accepted, and values outside the `i64` range are `None`.
pub fn parse_long(s: &str) -> Option<i64> {
    let s = trim_all(s.as_bytes());
    let (&first, _) = s.split_first()?;
    let negative = first == b'-';
    let mut rest = s;
    if negative || first == b'+' {
        if s.len() == 1 {
            return None;
        }
        rest = &s[1..];
    }
    // Accumulated negatively, as Spark does, so that i64::MIN is reachable.
    let mut result: i64 = 0;
    let mut digits = rest.iter();
    for &b in digits.by_ref() {
        if b == b'.' {
            break;
        }
        if !b.is_ascii_digit() {
            return None;
        }
        result = result.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    if !digits.all(u8::is_ascii_digit) {
        return None;
    }
    if negative {
        Some(result)
    } else {
        result.checked_neg()
    }
}

/// Spark's `StringUtils.isTrueString`/`isFalseString` after `trimAll` and lower-casing.
pub fn parse_bool(s: &str) -> Option<bool> {
    let trimmed = trim_all(s.as_bytes());
    let lower = String::from_utf8_lossy(trimmed).to_lowercase();
    match lower.as_str() {
        "t" | "true" | "y" | "yes" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// The first characters (value 0) of the runs of ten decimal digits outside ASCII that
/// Java's `Character.digit(c, 10)` accepts in UTF-16 code units (JDK 17, Unicode 13), which
/// `java.math.BigDecimal` parses as digits.
const JAVA_DIGIT_ZEROS: [u32; 36] = [
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
];

/// Java's `Character.digit(c, 10)` for a character of the Basic Multilingual Plane.
fn java_digit(c: char) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c as u8 - b'0');
    }
    let code = c as u32;
    JAVA_DIGIT_ZEROS
        .iter()
        .find(|zero| (**zero..**zero + 10).contains(&code))
        .map(|zero| (code - zero) as u8)
}

/// Spark's `Decimal.fromString` followed by `changePrecision(precision, scale, HALF_UP)`:
/// the string, trimmed as Java's `String.trim` does (characters up to U+0020), must be
/// `java.math.BigDecimal` syntax (sign, digits with an optional point, optional exponent);
/// values with more than 38 integral digits (as `BigDecimal` counts them, so `0e100` too)
/// or that do not fit `precision` are `None`.
pub fn parse_decimal(s: &str, precision: u8, scale: i8) -> Option<i128> {
    let s = s.trim_matches(|c: char| c <= ' ');
    let mut chars = s.chars().peekable();
    let negative = match chars.peek() {
        Some('-') => {
            chars.next();
            true
        }
        Some('+') => {
            chars.next();
            false
        }
        _ => false,
    };
    // Significant digits (leading zeros dropped), and the number of fraction digits.
    let mut digits: Vec<u8> = Vec::new();
    let mut any_digit = false;
    let mut fraction_digits: i64 = 0;
    let mut seen_point = false;
    let mut exponent: i64 = 0;
    while let Some(c) = chars.next() {
        if c == '.' {
            if seen_point {
                return None;
            }
            seen_point = true;
        } else if c == 'e' || c == 'E' {
            exponent = parse_java_exponent(chars.by_ref())?;
            break;
        } else {
            let d = java_digit(c)?;
            any_digit = true;
            if seen_point {
                fraction_digits += 1;
            }
            if d != 0 || !digits.is_empty() {
                digits.push(d);
            }
        }
    }
    if !any_digit {
        return None;
    }
    // BigDecimal's scale, which must fit an int.
    let bd_scale = fraction_digits.checked_sub(exponent)?;
    i32::try_from(bd_scale).ok()?;
    // Spark's fast fail: precision - scale > 38 integral digits (the precision of 0 is 1).
    let bd_precision = digits.len().max(1) as i64;
    if bd_precision - bd_scale > i64::from(MAX_PRECISION) {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    // value = digits * 10^-bd_scale; the result's unscaled value is value * 10^scale.
    let shift = i64::from(scale) - bd_scale;
    let n = digits.len() as i64;
    let kept = n + shift; // digits of the result before rounding
    if kept > i64::from(MAX_PRECISION) + 1 {
        return None;
    }
    let mut unscaled: i128 = 0;
    for i in 0..kept.max(0) {
        let d = digits.get(i as usize).copied().unwrap_or(0);
        unscaled = unscaled.checked_mul(10)?.checked_add(i128::from(d))?;
    }
    if kept >= 0
        && digits
            .get(kept as usize)
            .is_some_and(|first_dropped| *first_dropped >= 5)
    {
        unscaled += 1;
    }
    if unscaled >= 10_i128.pow(u32::from(precision)) {
        return None;
    }
    Some(if negative { -unscaled } else { unscaled })
}

/// The exponent after `e` in `java.math.BigDecimal` syntax: optional sign, then digits (at
/// most 10 after leading zeros, as Java requires), to the end of the string.
fn parse_java_exponent(chars: impl Iterator<Item = char>) -> Option<i64> {
    let mut chars = chars.peekable();
    let negative = match chars.peek() {
        Some('-') => {
            chars.next();
            true
        }
        Some('+') => {
            chars.next();
            false
        }
        _ => false,
    };
    let mut value: i64 = 0;
    let mut significant = 0;
    let mut any = false;
    for c in chars {
        let d = java_digit(c)?;
        any = true;
        if d != 0 || significant > 0 {
            significant += 1;
        }
        if significant > 10 {
            return None;
        }
        value = value * 10 + i64::from(d);
    }
    if !any {
        return None;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_parse_like_utf8string_to_long() {
        assert_eq!(parse_long(" 1.5 "), Some(1));
        assert_eq!(parse_long("."), Some(0));
        assert_eq!(parse_long("1."), Some(1));
        assert_eq!(parse_long("+.5"), Some(0));
        assert_eq!(parse_long("-"), None);
        assert_eq!(parse_long("\u{1}5\u{7f}"), Some(5));
        assert_eq!(parse_long("\u{a0}5"), None);
        assert_eq!(parse_long("1e5"), None);
        assert_eq!(parse_long(""), None);
        assert_eq!(parse_long("1.-5"), None);
        assert_eq!(parse_long("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_long("9223372036854775808"), None);
        assert_eq!(parse_long("9223372036854775807.99"), Some(i64::MAX));
    }

    #[test]
    fn booleans_parse_like_spark() {
        assert_eq!(parse_bool(" tRuE "), Some(true));
        assert_eq!(parse_bool("n"), Some(false));
        assert_eq!(parse_bool("0.0"), None);
    }

    #[test]
    fn decimals_parse_like_java_big_decimal() {
        assert_eq!(parse_decimal(" 1.5 ", 5, 2), Some(150));
        assert_eq!(parse_decimal("1e3", 10, 2), Some(100000));
        assert_eq!(parse_decimal("1.005", 5, 2), Some(101));
        assert_eq!(parse_decimal("-1.005", 5, 2), Some(-101));
        assert_eq!(parse_decimal(".5", 5, 2), Some(50));
        assert_eq!(parse_decimal("5.", 5, 2), Some(500));
        assert_eq!(parse_decimal("1e-3", 5, 2), Some(0));
        assert_eq!(parse_decimal("0.5e-2", 5, 2), Some(1));
        assert_eq!(parse_decimal("123456", 5, 2), None);
        assert_eq!(parse_decimal("999.995", 5, 2), None);
        assert_eq!(parse_decimal("99.995", 5, 2), Some(10000));
        assert_eq!(parse_decimal("9.995", 5, 2), Some(1000));
        assert_eq!(parse_decimal("1_0", 5, 2), None);
        assert_eq!(parse_decimal("Infinity", 5, 2), None);
        assert_eq!(parse_decimal("1E+2", 5, 2), Some(10000));
        assert_eq!(parse_decimal("0e100", 5, 2), None);
        assert_eq!(parse_decimal("0e-100", 5, 2), Some(0));
        assert_eq!(parse_decimal("-0e30", 38, 10), Some(0));
        assert_eq!(parse_decimal("\u{0661}\u{0662}", 5, 0), Some(12));
        assert_eq!(parse_decimal(".", 5, 0), None);
        assert_eq!(parse_decimal("1e", 5, 0), None);
        assert_eq!(parse_decimal("1e99999999999", 5, 0), None);
        assert_eq!(parse_decimal("00001e00000000000002", 5, 0), Some(100));
    }
}
