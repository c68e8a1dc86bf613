//! Spark's `sum` over decimals: the buffer is `(sum: decimal(min(p + 10, 38), s), isEmpty)`,
//! a running sum that no longer fits the buffer's precision becomes null for good, and the
//! final value is null for an empty or overflowed sum (an error in ANSI mode).
//!
//! Integral and floating-point `sum` match DataFusion's `sum` once the input is cast to
//! Spark's result type (long or double), so only decimals need this function.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use crate::expressions::arithmetic::EvalMode;
use crate::kernels::decimal;

/// Spark `sum` for decimal input.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkDecimalSum {
    signature: Signature,
    eval_mode: EvalMode,
}

impl SparkDecimalSum {
    pub fn new(eval_mode: EvalMode) -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
            eval_mode,
        }
    }
}

/// Spark's result (and buffer) type of `sum` over `decimal(p, s)`.
pub fn sum_result_type(input: &DataType) -> Result<DataType> {
    match input {
        DataType::Decimal128(p, s) => {
            let (p, s) = decimal::bounded(i32::from(*p) + 10, i32::from(*s));
            Ok(DataType::Decimal128(p, s))
        }
        t => internal_err!("decimal sum over {t}"),
    }
}

impl AggregateUDFImpl for SparkDecimalSum {
    fn name(&self) -> &str {
        "spark_sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] => sum_result_type(t),
            _ => internal_err!("sum takes one argument"),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[sum]", args.name),
                args.return_type().clone(),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[isEmpty]", args.name),
                DataType::Boolean,
                false,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let DataType::Decimal128(precision, scale) = *args.return_field.data_type() else {
            return internal_err!("decimal sum returning {}", args.return_field.data_type());
        };
        Ok(Box::new(DecimalSumAccumulator {
            limit: 10_u128.pow(u32::from(precision)),
            sum: Some(0),
            is_empty: true,
            precision,
            scale,
            eval_mode: self.eval_mode,
        }))
    }
}

#[derive(Debug)]
struct DecimalSumAccumulator {
    /// `None` once the running sum overflowed the buffer's precision.
    sum: Option<i128>,
    is_empty: bool,
    /// 10^precision: sums at least this large overflow.
    limit: u128,
    precision: u8,
    scale: i8,
    eval_mode: EvalMode,
}

impl DecimalSumAccumulator {
    fn add(&self, a: i128, b: i128) -> Option<i128> {
        a.checked_add(b).filter(|v| v.unsigned_abs() < self.limit)
    }
}

impl Accumulator for DecimalSumAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [values] = values else {
            return internal_err!("sum takes one argument");
        };
        // The input's scale equals the buffer's: Spark only widens the precision.
        let values = values.as_primitive::<Decimal128Type>();
        for v in values.iter().flatten() {
            self.is_empty = false;
            self.sum = self.sum.and_then(|s| self.add(s, v));
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [sums, empties] = states else {
            return internal_err!("sum state has two columns");
        };
        let sums = sums.as_primitive::<Decimal128Type>();
        let empties: &BooleanArray = empties.as_boolean();
        for i in 0..sums.len() {
            let other_empty = empties.is_valid(i) && empties.value(i);
            let other_overflowed = !other_empty && sums.is_null(i);
            let this_overflowed = !self.is_empty && self.sum.is_none();
            self.sum = if this_overflowed || other_overflowed {
                None
            } else {
                let other = if sums.is_null(i) { 0 } else { sums.value(i) };
                self.sum.and_then(|s| self.add(s, other))
            };
            self.is_empty = self.is_empty && other_empty;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Decimal128(self.sum, self.precision, self.scale),
            ScalarValue::Boolean(Some(self.is_empty)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.is_empty {
            return Ok(ScalarValue::Decimal128(None, self.precision, self.scale));
        }
        if self.sum.is_none() && self.eval_mode == EvalMode::Ansi {
            return exec_err!(
                "[ARITHMETIC_OVERFLOW] sum overflowed Decimal({}, {})",
                self.precision,
                self.scale
            );
        }
        Ok(ScalarValue::Decimal128(
            self.sum,
            self.precision,
            self.scale,
        ))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }
}
