//! Spark's `%` (Remainder) and `pmod` (Pmod) on integers and floating point outside ANSI
//! mode: Java's `%` (the sign of the dividend, `Int.MinValue % -1 == 0`, `fmod` for floats),
//! null when the divisor is zero. Decimals and ANSI mode stay in Spark.

use std::fmt::{self, Display, Formatter};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, FieldRef, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, Schema,
};
use arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err, internal_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

/// Which of Spark's two remainders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemainderKind {
    /// `a % n`.
    Remainder,
    /// `pmod(a, n)`: `r = a % n; if (r < 0) (r + n) % n else r`.
    Pmod,
}

/// `%` or `pmod` of two operands of one integral or floating-point type (Spark's result type).
#[derive(Debug, Clone)]
pub struct SparkRemainder {
    kind: RemainderKind,
    left: Arc<dyn PhysicalExpr>,
    right: Arc<dyn PhysicalExpr>,
    data_type: DataType,
}

impl SparkRemainder {
    /// Creates the expression; both operands and `return_type` must be one supported type.
    pub fn try_new(
        kind: RemainderKind,
        left: Arc<dyn PhysicalExpr>,
        right: Arc<dyn PhysicalExpr>,
        return_type: DataType,
        input_schema: &Schema,
    ) -> Result<Self> {
        let (lt, rt) = (
            left.data_type(input_schema)?,
            right.data_type(input_schema)?,
        );
        let supported = lt == rt
            && rt == return_type
            && matches!(
                return_type,
                DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::Float32
                    | DataType::Float64
            );
        if !supported {
            return exec_err!("unsupported {kind:?} on {lt} and {rt} giving {return_type}");
        }
        Ok(Self {
            kind,
            left,
            right,
            data_type: return_type,
        })
    }
}

macro_rules! integer_ops {
    ($rem:ident, $pmod:ident, $t:ty, $wide:ty) => {
        /// Java's `a % n` (wrapping: `MIN % -1 == 0`); `None` when `n` is zero.
        pub fn $rem(a: $t, n: $t) -> Option<$t> {
            if n == 0 {
                None
            } else {
                Some(a.wrapping_rem(n))
            }
        }

        /// Spark's `pmod`, in Java's arithmetic (bytes and shorts are widened to int, ints
        /// and longs wrap); `None` when `n` is zero.
        pub fn $pmod(a: $t, n: $t) -> Option<$t> {
            if n == 0 {
                return None;
            }
            let (a, n) = (<$wide>::from(a), <$wide>::from(n));
            let r = a.wrapping_rem(n);
            let p = if r < 0 {
                r.wrapping_add(n).wrapping_rem(n)
            } else {
                r
            };
            // Java's narrowing conversion (truncation) back to the operand type.
            Some(p as $t)
        }
    };
}

integer_ops!(rem_i8, pmod_i8, i8, i32);
integer_ops!(rem_i16, pmod_i16, i16, i32);
integer_ops!(rem_i32, pmod_i32, i32, i32);
integer_ops!(rem_i64, pmod_i64, i64, i64);

macro_rules! float_ops {
    ($rem:ident, $pmod:ident, $t:ty) => {
        /// Java's `a % n` (IEEE `fmod`, as Rust's `%`); `None` when `n` is (either) zero.
        pub fn $rem(a: $t, n: $t) -> Option<$t> {
            if n == 0.0 { None } else { Some(a % n) }
        }

        /// Spark's `pmod` on floating point; `None` when `n` is (either) zero.
        pub fn $pmod(a: $t, n: $t) -> Option<$t> {
            if n == 0.0 {
                return None;
            }
            let r = a % n;
            Some(if r < 0.0 { (r + n) % n } else { r })
        }
    };
}

float_ops!(rem_f32, pmod_f32, f32);
float_ops!(rem_f64, pmod_f64, f64);

/// Applies `f` to each pair of non-null values; either null gives null.
fn apply<T: ArrowPrimitiveType>(
    l: &ArrayRef,
    r: &ArrayRef,
    f: fn(T::Native, T::Native) -> Option<T::Native>,
) -> Result<ArrayRef> {
    let (Some(l), Some(r)) = (l.as_primitive_opt::<T>(), r.as_primitive_opt::<T>()) else {
        return internal_err!(
            "remainder of {} and {} as {}",
            l.data_type(),
            r.data_type(),
            T::DATA_TYPE
        );
    };
    let out: PrimitiveArray<T> = l
        .iter()
        .zip(r.iter())
        .map(|(a, n)| match (a, n) {
            (Some(a), Some(n)) => f(a, n),
            _ => None,
        })
        .collect();
    Ok(Arc::new(out))
}

/// `%` or `pmod` of two arrays of one type.
pub fn remainder(kind: RemainderKind, l: &ArrayRef, r: &ArrayRef) -> Result<ArrayRef> {
    use RemainderKind::{Pmod, Remainder};
    match (l.data_type(), kind) {
        (DataType::Int8, Remainder) => apply::<Int8Type>(l, r, rem_i8),
        (DataType::Int8, Pmod) => apply::<Int8Type>(l, r, pmod_i8),
        (DataType::Int16, Remainder) => apply::<Int16Type>(l, r, rem_i16),
        (DataType::Int16, Pmod) => apply::<Int16Type>(l, r, pmod_i16),
        (DataType::Int32, Remainder) => apply::<Int32Type>(l, r, rem_i32),
        (DataType::Int32, Pmod) => apply::<Int32Type>(l, r, pmod_i32),
        (DataType::Int64, Remainder) => apply::<Int64Type>(l, r, rem_i64),
        (DataType::Int64, Pmod) => apply::<Int64Type>(l, r, pmod_i64),
        (DataType::Float32, Remainder) => apply::<Float32Type>(l, r, rem_f32),
        (DataType::Float32, Pmod) => apply::<Float32Type>(l, r, pmod_f32),
        (DataType::Float64, Remainder) => apply::<Float64Type>(l, r, rem_f64),
        (DataType::Float64, Pmod) => apply::<Float64Type>(l, r, pmod_f64),
        (t, _) => internal_err!("{kind:?} on {t}"),
    }
}

// Arc<dyn PhysicalExpr> fields need hand-written equality and hashing.
impl PartialEq for SparkRemainder {
    fn eq(&self, other: &Self) -> bool {
        self.left.as_ref() == other.left.as_ref()
            && self.right.as_ref() == other.right.as_ref()
            && self.kind == other.kind
            && self.data_type == other.data_type
    }
}

impl Eq for SparkRemainder {}

impl std::hash::Hash for SparkRemainder {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.left.hash(state);
        self.right.hash(state);
        self.kind.hash(state);
        self.data_type.hash(state);
    }
}

impl Display for SparkRemainder {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.kind {
            RemainderKind::Remainder => write!(f, "({} % {})", self.left, self.right),
            RemainderKind::Pmod => write!(f, "pmod({}, {})", self.left, self.right),
        }
    }
}

impl PhysicalExpr for SparkRemainder {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        // A zero divisor gives null, so the result is nullable.
        let _ = input_schema;
        Ok(Arc::new(Field::new(
            self.to_string(),
            self.data_type.clone(),
            true,
        )))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let l = self.left.evaluate(batch)?.into_array(rows)?;
        let r = self.right.evaluate(batch)?.into_array(rows)?;
        Ok(ColumnarValue::Array(remainder(self.kind, &l, &r)?))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.left, &self.right]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [left, right]: [Arc<dyn PhysicalExpr>; 2] = children
            .try_into()
            .or_else(|_| internal_err!("remainder takes two children"))?;
        Ok(Arc::new(Self {
            left,
            right,
            ..(*self).clone()
        }))
    }

    fn fmt_sql(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int8Array, Int32Array, Int64Array};

    #[test]
    fn integer_remainder_follows_java() {
        assert_eq!(rem_i32(7, 3), Some(1));
        assert_eq!(rem_i32(-7, 3), Some(-1));
        assert_eq!(rem_i32(7, -3), Some(1));
        assert_eq!(rem_i32(-7, -3), Some(-1));
        assert_eq!(rem_i32(i32::MIN, -1), Some(0));
        assert_eq!(rem_i64(i64::MIN, -1), Some(0));
        assert_eq!(rem_i8(i8::MIN, -1), Some(0));
        assert_eq!(rem_i32(5, 0), None);
    }

    #[test]
    fn integer_pmod_follows_spark() {
        assert_eq!(pmod_i32(-7, 3), Some(2));
        assert_eq!(pmod_i32(7, -3), Some(1));
        assert_eq!(pmod_i32(-7, -3), Some(-1));
        assert_eq!(pmod_i32(i32::MIN, -1), Some(0));
        // r + n wraps around in int: (-1 + MIN) % MIN == MAX % MIN == MAX.
        assert_eq!(pmod_i32(-1, i32::MIN), Some(i32::MAX));
        assert_eq!(pmod_i64(-1, i64::MIN), Some(i64::MAX));
        // Bytes are computed in int: ((-1 + -128) % -128).toByte == -1.
        assert_eq!(pmod_i8(-1, i8::MIN), Some(-1));
        assert_eq!(pmod_i16(-1, i16::MIN), Some(-1));
        assert_eq!(pmod_i8(-7, 3), Some(2));
        assert_eq!(pmod_i64(3, 0), None);
    }

    #[test]
    fn float_remainder_and_pmod() {
        assert_eq!(rem_f64(5.5, 2.0), Some(1.5));
        assert_eq!(rem_f64(-5.5, 2.0), Some(-1.5));
        assert_eq!(rem_f64(1.0, 0.0), None);
        assert_eq!(rem_f64(1.0, -0.0), None);
        assert!(rem_f64(f64::NAN, 2.0).is_some_and(f64::is_nan));
        assert!(rem_f64(1.0, f64::NAN).is_some_and(f64::is_nan));
        assert!(rem_f64(f64::INFINITY, 2.0).is_some_and(f64::is_nan));
        assert_eq!(rem_f64(2.0, f64::INFINITY), Some(2.0));
        assert!(rem_f64(-0.0, 3.0).is_some_and(|v| v == 0.0 && v.is_sign_negative()));
        assert_eq!(pmod_f64(-5.5, 2.0), Some(0.5));
        assert_eq!(pmod_f64(5.5, -2.0), Some(1.5));
        assert_eq!(pmod_f32(-1.0, 3.0), Some(2.0));
        assert!(pmod_f64(f64::NAN, 2.0).is_some_and(f64::is_nan));
        assert_eq!(pmod_f64(1.0, 0.0), None);
    }

    #[test]
    fn arrays_with_nulls() -> Result<()> {
        let l: ArrayRef = Arc::new(Int32Array::from(vec![
            Some(-7),
            None,
            Some(5),
            Some(i32::MIN),
        ]));
        let r: ArrayRef = Arc::new(Int32Array::from(vec![Some(3), Some(1), Some(0), Some(-1)]));
        let out = remainder(RemainderKind::Pmod, &l, &r)?;
        let expected = Int32Array::from(vec![Some(2), None, None, Some(0)]);
        assert_eq!(out.as_primitive::<Int32Type>(), &expected);
        let l: ArrayRef = Arc::new(Float64Array::from(vec![Some(-5.5), Some(1.0), None]));
        let r: ArrayRef = Arc::new(Float64Array::from(vec![Some(2.0), Some(-0.0), Some(1.0)]));
        let out = remainder(RemainderKind::Remainder, &l, &r)?;
        let expected = Float64Array::from(vec![Some(-1.5), None, None]);
        assert_eq!(out.as_primitive::<Float64Type>(), &expected);
        let l: ArrayRef = Arc::new(Int8Array::from(vec![-1i8]));
        let r: ArrayRef = Arc::new(Int8Array::from(vec![i8::MIN]));
        let out = remainder(RemainderKind::Pmod, &l, &r)?;
        assert_eq!(out.as_primitive::<Int8Type>(), &Int8Array::from(vec![-1i8]));
        let wrong: ArrayRef = Arc::new(Int64Array::from(vec![1i64]));
        assert!(remainder(RemainderKind::Remainder, &l, &wrong).is_err());
        Ok(())
    }
}
