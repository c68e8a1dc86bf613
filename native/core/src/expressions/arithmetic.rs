//! Spark's `+ - * /` where DataFusion's operators differ from Spark: decimal results use the
//! type Spark computed (rounding HALF_UP, null or error on overflow), division by zero gives
//! null, and integer overflow wraps unless ANSI mode asks for an error.

use std::fmt::{self, Display, Formatter};
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowNativeTypeOp, AsArray, BooleanBufferBuilder, Decimal128Array,
    PrimitiveArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::numeric;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, FieldRef, Float32Type, Float64Type, Schema,
};
use arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err, internal_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

use crate::kernels::decimal::{DecimalKernel, DecimalOp, DecimalResult};

/// How overflow and division by zero are reported (Spark's `EvalMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvalMode {
    /// Null for decimals and division by zero; integers wrap around.
    Legacy,
    /// An error.
    Ansi,
    /// Null.
    Try,
}

/// A binary arithmetic expression with Spark semantics and a result type fixed by Spark.
#[derive(Debug, Clone)]
pub struct SparkArithmetic {
    op: DecimalOp,
    left: Arc<dyn PhysicalExpr>,
    right: Arc<dyn PhysicalExpr>,
    return_type: DataType,
    eval_mode: EvalMode,
}

impl SparkArithmetic {
    /// Creates the expression; `return_type` is the type Spark derived for it.
    pub fn try_new(
        op: DecimalOp,
        left: Arc<dyn PhysicalExpr>,
        right: Arc<dyn PhysicalExpr>,
        return_type: DataType,
        eval_mode: EvalMode,
        input_schema: &Schema,
    ) -> Result<Self> {
        let (lt, rt) = (
            left.data_type(input_schema)?,
            right.data_type(input_schema)?,
        );
        let supported = match (&lt, &rt, &return_type) {
            (DataType::Decimal128(..), DataType::Decimal128(..), DataType::Decimal128(..)) => true,
            (l, r, t) if l == r && r == t => {
                matches!(t, DataType::Float32 | DataType::Float64)
                    || (t.is_integer() && op != DecimalOp::Divide && eval_mode != EvalMode::Try)
            }
            _ => false,
        };
        if !supported {
            return exec_err!(
                "unsupported arithmetic {op:?} on {lt} and {rt} giving {return_type}"
            );
        }
        Ok(Self {
            op,
            left,
            right,
            return_type,
            eval_mode,
        })
    }

    fn evaluate_decimal(&self, l: &ArrayRef, r: &ArrayRef) -> Result<ArrayRef> {
        let (DataType::Decimal128(_, ls), DataType::Decimal128(_, rs)) =
            (l.data_type(), r.data_type())
        else {
            return internal_err!(
                "decimal arithmetic on {} and {}",
                l.data_type(),
                r.data_type()
            );
        };
        let DataType::Decimal128(p, s) = self.return_type else {
            return internal_err!("decimal arithmetic giving {}", self.return_type);
        };
        let (l, r) = (
            l.as_primitive::<arrow::datatypes::Decimal128Type>(),
            r.as_primitive::<arrow::datatypes::Decimal128Type>(),
        );
        let kernel = DecimalKernel::new(self.op, *ls, *rs, p, s);
        let nulls = NullBuffer::union(l.nulls(), r.nulls());
        let (lv, rv) = (l.values(), r.values());
        let mut values = vec![0_i128; l.len()];
        // Every position is computed, null or not (a null's value slot holds some number);
        // failures at null positions do not count. Overflows and divisions by zero become
        // nulls (outside ANSI mode); rare.
        let mut failed = Vec::new();
        let mut first_error = None;
        kernel.eval_slices(lv, rv, &mut values, |i, result| {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                return;
            }
            if self.eval_mode == EvalMode::Ansi && first_error.is_none() {
                first_error = Some(result);
            }
            failed.push(i);
        });
        match first_error {
            Some(DecimalResult::DivideByZero) => {
                return exec_err!("[DIVIDE_BY_ZERO] Division by zero");
            }
            Some(_) => {
                return exec_err!(
                    "[NUMERIC_VALUE_OUT_OF_RANGE] {:?} result does not fit Decimal({p}, {s})",
                    self.op
                );
            }
            None => {}
        }
        let nulls = if failed.is_empty() {
            nulls
        } else {
            let mut valid = BooleanBufferBuilder::new(values.len());
            match &nulls {
                Some(n) => valid.append_buffer(n.inner()),
                None => valid.append_n(values.len(), true),
            }
            failed.iter().for_each(|&i| valid.set_bit(i, false));
            Some(NullBuffer::new(valid.finish()))
        };
        let array = Decimal128Array::new(values.into(), nulls).with_precision_and_scale(p, s)?;
        Ok(Arc::new(array))
    }

    fn evaluate_float_divide(&self, l: &ArrayRef, r: &ArrayRef) -> Result<ArrayRef> {
        match l.data_type() {
            DataType::Float64 => divide_floats::<Float64Type>(l, r, self.eval_mode),
            DataType::Float32 => divide_floats::<Float32Type>(l, r, self.eval_mode),
            t => internal_err!("float division on {t}"),
        }
    }

    fn evaluate_native(&self, l: &ArrayRef, r: &ArrayRef) -> Result<ArrayRef> {
        let checked = self.eval_mode == EvalMode::Ansi;
        let result = match (self.op, checked) {
            (DecimalOp::Add, false) => numeric::add_wrapping(l, r),
            (DecimalOp::Add, true) => numeric::add(l, r),
            (DecimalOp::Subtract, false) => numeric::sub_wrapping(l, r),
            (DecimalOp::Subtract, true) => numeric::sub(l, r),
            (DecimalOp::Multiply, false) => numeric::mul_wrapping(l, r),
            (DecimalOp::Multiply, true) => numeric::mul(l, r),
            (DecimalOp::Divide, _) => return self.evaluate_float_divide(l, r),
        };
        result.or_else(|e| exec_err!("[ARITHMETIC_OVERFLOW] {e}"))
    }
}

/// Spark's `/` on floating point: null (or an error in ANSI mode) when dividing by zero.
fn divide_floats<T>(l: &ArrayRef, r: &ArrayRef, mode: EvalMode) -> Result<ArrayRef>
where
    T: ArrowPrimitiveType,
    T::Native: ArrowNativeTypeOp + std::ops::Div<Output = T::Native>,
{
    let (l, r) = (l.as_primitive::<T>(), r.as_primitive::<T>());
    let out: PrimitiveArray<T> = l
        .iter()
        .zip(r.iter())
        .map(|(a, b)| divide_or_null(a, b, T::Native::ZERO, mode))
        .collect::<Result<_>>()?;
    Ok(Arc::new(out))
}

fn divide_or_null<T>(a: Option<T>, b: Option<T>, zero: T, mode: EvalMode) -> Result<Option<T>>
where
    T: PartialEq + std::ops::Div<Output = T>,
{
    match (a, b) {
        (Some(_), Some(b)) if b == zero => {
            if mode == EvalMode::Ansi {
                exec_err!("[DIVIDE_BY_ZERO] Division by zero")
            } else {
                Ok(None)
            }
        }
        (Some(a), Some(b)) => Ok(Some(a / b)),
        _ => Ok(None),
    }
}

// Arc<dyn PhysicalExpr> fields need hand-written equality and hashing.
impl PartialEq for SparkArithmetic {
    fn eq(&self, other: &Self) -> bool {
        self.left.as_ref() == other.left.as_ref()
            && self.right.as_ref() == other.right.as_ref()
            && self.op == other.op
            && self.return_type == other.return_type
            && self.eval_mode == other.eval_mode
    }
}

impl Eq for SparkArithmetic {}

impl std::hash::Hash for SparkArithmetic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.left.hash(state);
        self.right.hash(state);
        self.op.hash(state);
        self.return_type.hash(state);
        self.eval_mode.hash(state);
    }
}

impl Display for SparkArithmetic {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let symbol = match self.op {
            DecimalOp::Add => "+",
            DecimalOp::Subtract => "-",
            DecimalOp::Multiply => "*",
            DecimalOp::Divide => "/",
        };
        write!(f, "({} {symbol} {})", self.left, self.right)
    }
}

impl PhysicalExpr for SparkArithmetic {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        // Overflow and division by zero give null, so the result is nullable.
        let _ = input_schema;
        Ok(Arc::new(Field::new(
            self.to_string(),
            self.return_type.clone(),
            true,
        )))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let l = self.left.evaluate(batch)?.into_array(rows)?;
        let r = self.right.evaluate(batch)?.into_array(rows)?;
        let out = if matches!(self.return_type, DataType::Decimal128(..)) {
            self.evaluate_decimal(&l, &r)?
        } else {
            self.evaluate_native(&l, &r)?
        };
        Ok(ColumnarValue::Array(out))
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
            .or_else(|_| internal_err!("arithmetic takes two children"))?;
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
