//! Spark's decimal arithmetic on unscaled values.
//!
//! Spark 3.5 computes `+ - * /` on `java.math.BigDecimal`: `*` keeps 39 significant digits
//! (rounding DOWN), `/` keeps 39 fractional digits (rounding DOWN), and the result is then
//! rounded HALF_UP to the result type's scale and checked against its precision. Because the
//! truncation happens at a finer position than the final rounding and never crosses a value
//! representable there, the outcome equals rounding the *exact* result HALF_UP once, which
//! is what this module does with 256-bit intermediates (wide enough for any product of two
//! 38-digit values; a wider dividend can only mean an overflowing quotient).

use arrow::datatypes::i256;

/// Largest precision of a Spark decimal.
pub const MAX_PRECISION: u8 = 38;

/// Result of one decimal operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalResult {
    Value(i128),
    /// The rounded result needs more digits than the result precision allows.
    Overflow,
    DivideByZero,
}

/// The four operators Spark evaluates on decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecimalOp {
    Add,
    Subtract,
    Multiply,
    Divide,
}

/// Powers of ten up to 10^76, the largest that fits 256 bits.
const POW10: [i256; 77] = {
    let mut table = [i256::ONE; 77];
    let mut i = 1;
    while i < 77 {
        table[i] = table[i - 1].wrapping_mul(i256::from_i128(10));
        i += 1;
    }
    table
};

/// 10^n as a 256-bit integer (n <= 76).
pub fn pow10(n: u32) -> i256 {
    POW10[n as usize]
}

/// 10^n for n <= 38.
pub fn pow10_i128(n: u32) -> i128 {
    10_i128.pow(n)
}

/// `n / d` rounded HALF_UP (ties away from zero) in 128 bits; `d` must not be zero.
fn div_round_half_up_i128(n: i128, d: i128) -> i128 {
    let (q, r) = (n / d, n % d);
    if r != 0 && r.unsigned_abs() >= d.unsigned_abs() - r.unsigned_abs() {
        if (n < 0) != (d < 0) { q - 1 } else { q + 1 }
    } else {
        q
    }
}

/// Multiplies by `10^diff` (`diff >= 0`) or divides by `10^-diff` rounding HALF_UP, in
/// 128 bits; the factor is computed once per operator, not per value.
#[derive(Debug, Clone, Copy)]
enum Rescale {
    Up(i128),
    Down(i128),
}

impl Rescale {
    /// `None` when `10^|diff|` does not fit 128 bits.
    fn new(diff: i32) -> Option<Self> {
        let factor = 10_i128.checked_pow(diff.unsigned_abs())?;
        Some(if diff >= 0 {
            Rescale::Up(factor)
        } else {
            Rescale::Down(factor)
        })
    }

    #[inline]
    fn apply(self, v: i128) -> Option<i128> {
        match self {
            Rescale::Up(1) => Some(v),
            Rescale::Up(f) => v.checked_mul(f),
            Rescale::Down(f) => Some(div_round_half_up_i128(v, f)),
        }
    }
}

/// One decimal operator on fixed operand and result types, prepared for many values: the
/// scaling factors and the result bound are computed once, so the common case is a few
/// checked 128-bit operations per value; values whose intermediates leave 128 bits take the
/// exact 256-bit path of [`apply`].
#[derive(Debug, Clone, Copy)]
pub struct DecimalKernel {
    op: DecimalOp,
    left_scale: i8,
    right_scale: i8,
    precision: u8,
    scale: i8,
    /// Add/subtract: the operands' factors to the common scale, then common → result.
    /// Multiply: product scale → result. Divide: the factor (always `Up`) of the dividend,
    /// or of the divisor when the quotient's scale is below the operands' difference.
    left: Option<Rescale>,
    right: Option<Rescale>,
    result: Option<Rescale>,
    /// 10^precision: results must be smaller in magnitude.
    bound: u128,
}

impl DecimalKernel {
    pub fn new(op: DecimalOp, left_scale: i8, right_scale: i8, precision: u8, scale: i8) -> Self {
        let (ls, rs, s) = (
            i32::from(left_scale),
            i32::from(right_scale),
            i32::from(scale),
        );
        let (left, right, result) = match op {
            DecimalOp::Add | DecimalOp::Subtract => {
                let common = ls.max(rs);
                (
                    Rescale::new(common - ls),
                    Rescale::new(common - rs),
                    Rescale::new(s - common),
                )
            }
            DecimalOp::Multiply => (None, None, Rescale::new(s - ls - rs)),
            DecimalOp::Divide => {
                let shift = s - ls + rs;
                if shift >= 0 {
                    (Rescale::new(shift), None, None)
                } else {
                    (None, Rescale::new(-shift), None)
                }
            }
        };
        Self {
            op,
            left_scale,
            right_scale,
            precision,
            scale,
            left,
            right,
            result,
            bound: 10_u128.pow(u32::from(precision.min(MAX_PRECISION))),
        }
    }

    /// `left op right` as an unscaled value of the result type.
    #[inline]
    pub fn eval(&self, left: i128, right: i128) -> DecimalResult {
        if self.op == DecimalOp::Divide && right == 0 {
            return DecimalResult::DivideByZero;
        }
        match self.eval_i128(left, right) {
            Some(v) if v.unsigned_abs() < self.bound => DecimalResult::Value(v),
            Some(_) => DecimalResult::Overflow,
            None => self.eval_wide(left, right),
        }
    }

    /// `left[i] op right[i]` into `out[i]` for every position; `failed(i, result)` for the
    /// positions whose result is not a value (overflow, division by zero), which keep 0.
    ///
    /// Where no rounding is needed (the result has the operands' scale), operands that fit
    /// 64 bits take a branch-light loop: their products and scaled sums cannot leave 128 bits,
    /// so only the precision bound is checked. Other values take [`Self::eval`].
    pub fn eval_slices(
        &self,
        left: &[i128],
        right: &[i128],
        out: &mut [i128],
        mut failed: impl FnMut(usize, DecimalResult),
    ) {
        let exact_scale = matches!(self.result, Some(Rescale::Up(1)));
        let fits_i64 = |v: i128| i64::try_from(v).is_ok();
        let factor = |r: Option<Rescale>| match r {
            Some(Rescale::Up(f)) if fits_i64(f) => Some(f),
            _ => None,
        };
        let mut slow = |i: usize, l: i128, r: i128, out: &mut i128| match self.eval(l, r) {
            DecimalResult::Value(v) => *out = v,
            other => failed(i, other),
        };
        match (self.op, exact_scale, factor(self.left), factor(self.right)) {
            (DecimalOp::Multiply, true, _, _) => {
                for (i, ((&l, &r), out)) in left.iter().zip(right).zip(out.iter_mut()).enumerate() {
                    // One widening 64-bit multiplication rather than a 128-bit one.
                    let product = match (i64::try_from(l), i64::try_from(r)) {
                        (Ok(a), Ok(b)) => Some(i128::from(a) * i128::from(b)),
                        _ => None,
                    };
                    match product {
                        Some(v) if v.unsigned_abs() < self.bound => *out = v,
                        _ => slow(i, l, r, out),
                    }
                }
            }
            (DecimalOp::Add | DecimalOp::Subtract, true, Some(lf), Some(rf)) => {
                let sign = if self.op == DecimalOp::Add { 1 } else { -1 };
                for (i, ((&l, &r), out)) in left.iter().zip(right).zip(out.iter_mut()).enumerate() {
                    let v = l.wrapping_mul(lf).wrapping_add(sign * r.wrapping_mul(rf));
                    if fits_i64(l) && fits_i64(r) && v.unsigned_abs() < self.bound {
                        *out = v;
                    } else {
                        slow(i, l, r, out);
                    }
                }
            }
            _ => {
                for (i, ((&l, &r), out)) in left.iter().zip(right).zip(out.iter_mut()).enumerate() {
                    slow(i, l, r, out);
                }
            }
        }
    }

    /// The exact HALF_UP result in 128 bits; `None` when an intermediate does not fit.
    #[inline]
    fn eval_i128(&self, left: i128, right: i128) -> Option<i128> {
        match self.op {
            DecimalOp::Add | DecimalOp::Subtract => {
                let l = self.left?.apply(left)?;
                let r = self.right?.apply(right)?;
                let v = if self.op == DecimalOp::Add {
                    l.checked_add(r)?
                } else {
                    l.checked_sub(r)?
                };
                self.result?.apply(v)
            }
            DecimalOp::Multiply => {
                // Operands that fit 64 bits (nearly all decimals) multiply with one
                // instruction and cannot overflow 128 bits; others need the checked product.
                let product = match (i64::try_from(left), i64::try_from(right)) {
                    (Ok(l), Ok(r)) => i128::from(l) * i128::from(r),
                    _ => left.checked_mul(right)?,
                };
                self.result?.apply(product)
            }
            DecimalOp::Divide => match (self.left, self.right) {
                (Some(Rescale::Up(f)), _) => {
                    Some(div_round_half_up_i128(left.checked_mul(f)?, right))
                }
                (_, Some(Rescale::Up(f))) => {
                    Some(div_round_half_up_i128(left, right.checked_mul(f)?))
                }
                _ => None,
            },
        }
    }
}

/// `n / d` rounded HALF_UP (ties away from zero); `d` must not be zero.
pub fn div_round_half_up(n: i256, d: i256) -> i256 {
    let q = n.wrapping_div(d);
    let r = n.wrapping_rem(d);
    if r == i256::ZERO {
        return q;
    }
    // |2r| >= |d| means the dropped fraction is at least one half.
    let twice_r = r.wrapping_mul(i256::from_i128(2)).wrapping_abs();
    if twice_r >= d.wrapping_abs() {
        if (n < i256::ZERO) != (d < i256::ZERO) {
            q.wrapping_sub(i256::ONE)
        } else {
            q.wrapping_add(i256::ONE)
        }
    } else {
        q
    }
}

/// Changes the scale of an unscaled value, rounding HALF_UP when digits are dropped.
/// `None` when scaling up overflows 256 bits.
pub fn rescale(value: i256, from_scale: i8, to_scale: i8) -> Option<i256> {
    let diff = i32::from(to_scale) - i32::from(from_scale);
    if diff == 0 {
        Some(value)
    } else if diff > 0 {
        value.checked_mul(pow10(diff as u32))
    } else {
        Some(div_round_half_up(value, pow10((-diff) as u32)))
    }
}

/// The value as an i128 if it has at most `precision` digits.
pub fn fit_precision(value: i256, precision: u8) -> Option<i128> {
    let limit = pow10(u32::from(precision));
    if value.wrapping_abs() < limit && value > limit.wrapping_neg() {
        value.to_i128()
    } else {
        None
    }
}

/// Spark's `Decimal.changePrecision(precision, scale, ROUND_HALF_UP)` on one value:
/// `None` on overflow.
pub fn change_precision(
    value: i128,
    from_scale: i8,
    to_precision: u8,
    to_scale: i8,
) -> Option<i128> {
    rescale(i256::from_i128(value), from_scale, to_scale)
        .and_then(|v| fit_precision(v, to_precision))
}

/// Evaluates `left op right` for unscaled values of scales `left_scale` and `right_scale`,
/// giving an unscaled value of the result type `(precision, scale)`. For many values of the
/// same types, prepare a [`DecimalKernel`] once instead.
pub fn apply(
    op: DecimalOp,
    left: i128,
    left_scale: i8,
    right: i128,
    right_scale: i8,
    precision: u8,
    scale: i8,
) -> DecimalResult {
    DecimalKernel::new(op, left_scale, right_scale, precision, scale).eval(left, right)
}

impl DecimalKernel {
    /// [`Self::eval`] with 256-bit intermediates, for values whose 128-bit evaluation
    /// overflows.
    fn eval_wide(&self, left: i128, right: i128) -> DecimalResult {
        let (op, left_scale, right_scale, precision, scale) = (
            self.op,
            self.left_scale,
            self.right_scale,
            self.precision,
            self.scale,
        );
        let l = i256::from_i128(left);
        let r = i256::from_i128(right);
        let exact = match op {
            DecimalOp::Add | DecimalOp::Subtract => {
                // Align both operands to the larger scale: exact, at most 76 digits.
                let common = left_scale.max(right_scale);
                let (Some(l), Some(r)) = (
                    rescale(l, left_scale, common),
                    rescale(r, right_scale, common),
                ) else {
                    return DecimalResult::Overflow;
                };
                let sum = if op == DecimalOp::Add {
                    l.checked_add(r)
                } else {
                    l.checked_sub(r)
                };
                sum.and_then(|v| rescale(v, common, scale))
            }
            DecimalOp::Multiply => {
                // The product of two 38-digit values has at most 76 digits: always fits.
                let product = l.wrapping_mul(r);
                rescale(product, left_scale + right_scale, scale)
            }
            DecimalOp::Divide => {
                // left / right at `scale`: (l * 10^(scale - ls + rs)) / r, rounded HALF_UP.
                let shift = i32::from(scale) - i32::from(left_scale) + i32::from(right_scale);
                if shift >= 0 {
                    l.checked_mul(pow10(shift as u32))
                        .map(|n| div_round_half_up(n, r))
                } else {
                    r.checked_mul(pow10((-shift) as u32))
                        .map(|d| div_round_half_up(l, d))
                }
            }
        };
        match exact.and_then(|v| fit_precision(v, precision)) {
            Some(v) => DecimalResult::Value(v),
            None => DecimalResult::Overflow,
        }
    }
}

/// Spark's `DecimalType.adjustPrecisionScale` (with `allowPrecisionLoss`): bounds a result
/// type to 38 digits by giving up fractional digits, keeping at least 6 of them.
pub fn adjust_precision_scale(precision: i32, scale: i32) -> (u8, i8) {
    if precision <= i32::from(MAX_PRECISION) {
        (precision as u8, scale as i8)
    } else {
        let int_digits = precision - scale;
        let min_scale = scale.min(6);
        let adjusted = (i32::from(MAX_PRECISION) - int_digits).max(min_scale);
        (MAX_PRECISION, adjusted as i8)
    }
}

/// The result type of Spark's decimal `Divide` (with `allowPrecisionLoss`, Spark's default).
pub fn divide_result_type(p1: u8, s1: i8, p2: u8, s2: i8) -> (u8, i8) {
    let (p1, s1, p2, s2) = (i32::from(p1), i32::from(s1), i32::from(p2), i32::from(s2));
    let int_digits = p1 - s1 + s2;
    let scale = 6.max(s1 + p2 + 1);
    adjust_precision_scale(int_digits + scale, scale)
}

/// Spark's `DecimalType.bounded(precision, scale)`.
pub fn bounded(precision: i32, scale: i32) -> (u8, i8) {
    (
        precision.min(i32::from(MAX_PRECISION)) as u8,
        scale.min(i32::from(MAX_PRECISION)) as i8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use DecimalResult::*;

    const ALL_OPS: [DecimalOp; 4] = [
        DecimalOp::Add,
        DecimalOp::Subtract,
        DecimalOp::Multiply,
        DecimalOp::Divide,
    ];

    #[test]
    fn half_up_rounds_ties_away_from_zero() {
        let d = |n: i128, q: i128| div_round_half_up(i256::from_i128(n), i256::from_i128(q));
        assert_eq!(d(25, 10), i256::from_i128(3));
        assert_eq!(d(-25, 10), i256::from_i128(-3));
        assert_eq!(d(24, 10), i256::from_i128(2));
        assert_eq!(d(-24, 10), i256::from_i128(-2));
        assert_eq!(d(25, -10), i256::from_i128(-3));
        assert_eq!(d(15, 10), i256::from_i128(2));
    }

    #[test]
    fn multiply_keeps_exact_scale() {
        // 1.25 * 2.50 = 3.1250 as decimal(31, 4)
        assert_eq!(
            apply(DecimalOp::Multiply, 125, 2, 250, 2, 31, 4),
            Value(31250)
        );
        // rounded to scale 1 HALF_UP: 3.1
        assert_eq!(apply(DecimalOp::Multiply, 125, 2, 250, 2, 31, 1), Value(31));
        // -1.25 * 0.3 = -0.375 -> scale 2: -0.38
        assert_eq!(apply(DecimalOp::Multiply, -125, 2, 3, 1, 10, 2), Value(-38));
    }

    #[test]
    fn overflow_is_reported() {
        let big = pow10_i128(37) * 9; // 9e37, 38 digits
        assert_eq!(apply(DecimalOp::Add, big, 0, big, 0, 38, 0), Overflow);
        assert_eq!(apply(DecimalOp::Multiply, big, 0, big, 0, 38, 0), Overflow);
        assert_eq!(apply(DecimalOp::Add, 99, 0, 1, 0, 2, 0), Overflow);
        assert_eq!(apply(DecimalOp::Add, 98, 0, 1, 0, 2, 0), Value(99));
    }

    #[test]
    fn division_rounds_half_up_and_detects_zero() {
        // 1 / 3 at scale 6 = 0.333333
        assert_eq!(apply(DecimalOp::Divide, 1, 0, 3, 0, 38, 6), Value(333_333));
        // 2 / 3 at scale 6 = 0.666667
        assert_eq!(apply(DecimalOp::Divide, 2, 0, 3, 0, 38, 6), Value(666_667));
        // -2 / 3 = -0.666667
        assert_eq!(
            apply(DecimalOp::Divide, -2, 0, 3, 0, 38, 6),
            Value(-666_667)
        );
        assert_eq!(apply(DecimalOp::Divide, 1, 0, 0, 0, 38, 6), DivideByZero);
        // 10.00 / 0.5 at scale 2 = 20.00 (result scale below operand scales)
        assert_eq!(apply(DecimalOp::Divide, 1000, 2, 5, 1, 10, 2), Value(2000));
        // huge dividend shift: quotient cannot fit
        assert_eq!(
            apply(DecimalOp::Divide, pow10_i128(37), 0, 1, 38, 38, 38),
            Overflow
        );
    }

    #[test]
    fn narrow_and_wide_paths_agree() {
        let values = [
            0_i128,
            1,
            -1,
            5,
            -5,
            12345,
            -98765,
            999_999_999,
            pow10_i128(20) + 7,
        ];
        for op in ALL_OPS {
            for &a in &values {
                for &b in &values {
                    for (sa, sb, s) in [(2, 2, 4), (0, 3, 2), (5, 1, 6), (3, 3, 0)] {
                        if op == DecimalOp::Divide && b == 0 {
                            continue;
                        }
                        let narrow = DecimalKernel::new(op, sa, sb, 38, s).eval_i128(a, b);
                        let wide = {
                            let (l, r) = (i256::from_i128(a), i256::from_i128(b));
                            match op {
                                DecimalOp::Multiply => rescale(l.wrapping_mul(r), sa + sb, s),
                                DecimalOp::Divide => {
                                    let shift = i32::from(s) - i32::from(sa) + i32::from(sb);
                                    if shift >= 0 {
                                        Some(div_round_half_up(
                                            l.wrapping_mul(pow10(shift as u32)),
                                            r,
                                        ))
                                    } else {
                                        Some(div_round_half_up(
                                            l,
                                            r.wrapping_mul(pow10((-shift) as u32)),
                                        ))
                                    }
                                }
                                _ => {
                                    let c = sa.max(sb);
                                    let (l, r) =
                                        (rescale(l, sa, c).unwrap(), rescale(r, sb, c).unwrap());
                                    let v = if op == DecimalOp::Add {
                                        l.wrapping_add(r)
                                    } else {
                                        l.wrapping_sub(r)
                                    };
                                    rescale(v, c, s)
                                }
                            }
                        };
                        if let Some(n) = narrow {
                            assert_eq!(
                                Some(i256::from_i128(n)),
                                wide,
                                "{op:?} {a}@{sa} {b}@{sb} -> @{s}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn prepared_kernel_agrees_with_the_exact_path() {
        let values = [
            0_i128,
            1,
            -7,
            55,
            -12_345,
            pow10_i128(9) - 1,
            pow10_i128(18) + 3,
            -pow10_i128(37),
            pow10_i128(38) - 1,
        ];
        for op in ALL_OPS {
            for (ls, rs, p, s) in [(2, 2, 38, 4), (0, 3, 10, 2), (6, 1, 38, 38), (3, 3, 12, 0)] {
                let kernel = DecimalKernel::new(op, ls, rs, p, s);
                for &a in &values {
                    for &b in &values {
                        let expected = if op == DecimalOp::Divide && b == 0 {
                            DivideByZero
                        } else {
                            kernel.eval_wide(a, b)
                        };
                        assert_eq!(kernel.eval(a, b), expected, "{op:?} {a}@{ls} {b}@{rs}");
                    }
                }
            }
        }
    }

    #[test]
    fn slices_agree_with_one_value_at_a_time() {
        let values = [
            0_i128,
            1,
            -7,
            99,
            -12_345,
            i128::from(i64::MAX),
            i128::from(i64::MIN),
            pow10_i128(17) - 1,
            -pow10_i128(18) - 3,
            pow10_i128(37),
            pow10_i128(38) - 1,
        ];
        let (left, right): (Vec<i128>, Vec<i128>) = values
            .iter()
            .flat_map(|&a| values.iter().map(move |&b| (a, b)))
            .unzip();
        // Exact scales (the fast loops), rescaled operands and rounded results.
        let types = [
            (2, 2, 38, 4),
            (2, 2, 38, 2),
            (0, 2, 16, 2),
            (4, 2, 20, 4),
            (3, 3, 12, 0),
        ];
        for op in ALL_OPS {
            for (ls, rs, p, s) in types {
                let kernel = DecimalKernel::new(op, ls, rs, p, s);
                let mut out = vec![0_i128; left.len()];
                let mut failures = Vec::new();
                kernel.eval_slices(&left, &right, &mut out, |i, r| failures.push((i, r)));
                for (i, (&a, &b)) in left.iter().zip(&right).enumerate() {
                    let got = match failures.iter().find(|(f, _)| *f == i) {
                        Some(&(_, failure)) => failure,
                        None => Value(out[i]),
                    };
                    assert_eq!(
                        got,
                        kernel.eval(a, b),
                        "{op:?} {a}@{ls} {b}@{rs} -> ({p},{s})"
                    );
                }
            }
        }
    }

    #[test]
    fn subtract_aligns_scales() {
        // 1 - 0.05 = 0.95 (decimal(1,0) - decimal(15,2) -> decimal(16,2))
        assert_eq!(apply(DecimalOp::Subtract, 1, 0, 5, 2, 16, 2), Value(95));
    }

    #[test]
    fn result_types_follow_spark() {
        // avg(decimal(15,2)): sum decimal(25,2) / count decimal(20,0)
        assert_eq!(divide_result_type(25, 2, 20, 0), (38, 15));
        assert_eq!(divide_result_type(10, 2, 5, 0), (16, 8));
        assert_eq!(adjust_precision_scale(49, 6), (38, 6));
        assert_eq!(bounded(45, 2), (38, 2));
    }

    #[test]
    fn change_precision_rounds_and_checks() {
        assert_eq!(change_precision(12345, 3, 5, 2), Some(1235));
        assert_eq!(change_precision(-12345, 3, 5, 2), Some(-1235));
        assert_eq!(change_precision(99999, 2, 4, 2), None);
        assert_eq!(change_precision(5, 0, 3, 2), Some(500));
    }
}
