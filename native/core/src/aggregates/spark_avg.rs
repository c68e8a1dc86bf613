//! Spark's `avg`: the buffer is `(sum, count: long)` where `sum` is a double, or for
//! `decimal(p, s)` input a `decimal(min(p + 10, 38), s)` that turns null on overflow. The
//! final value is null when nothing was counted; for decimals it is Spark's
//! `CAST(sum / CAST(count AS decimal(20, 0)) AS decimal(p + 4, s + 4))`, rounding HALF_UP
//! at the division's scale and again at the result's, exactly as Spark does.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use crate::expressions::arithmetic::EvalMode;
use crate::kernels::decimal::{self, DecimalOp, DecimalResult};

/// Spark `avg` over doubles or decimals (other numeric input is cast to double first).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkAvg {
    signature: Signature,
    eval_mode: EvalMode,
}

impl SparkAvg {
    pub fn new(eval_mode: EvalMode) -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
            eval_mode,
        }
    }
}

/// Spark's result type of `avg` over `input` (double or decimal).
pub fn avg_result_type(input: &DataType) -> Result<DataType> {
    match input {
        DataType::Float64 => Ok(DataType::Float64),
        DataType::Decimal128(p, s) => {
            let (p, s) = decimal::bounded(i32::from(*p) + 4, i32::from(*s) + 4);
            Ok(DataType::Decimal128(p, s))
        }
        t => internal_err!("avg over {t}"),
    }
}

fn sum_type(input: &DataType) -> Result<DataType> {
    match input {
        DataType::Float64 => Ok(DataType::Float64),
        DataType::Decimal128(p, s) => {
            let (p, s) = decimal::bounded(i32::from(*p) + 10, i32::from(*s));
            Ok(DataType::Decimal128(p, s))
        }
        t => internal_err!("avg over {t}"),
    }
}

impl AggregateUDFImpl for SparkAvg {
    fn name(&self) -> &str {
        "spark_avg"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] => avg_result_type(t),
            _ => internal_err!("avg takes one argument"),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let [input] = args.input_fields else {
            return internal_err!("avg takes one argument");
        };
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[sum]", args.name),
                sum_type(input.data_type())?,
                true,
            )),
            Arc::new(Field::new(
                format!("{}[count]", args.name),
                DataType::Int64,
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let [input] = args.expr_fields else {
            return internal_err!("avg takes one argument");
        };
        match (input.data_type(), args.return_field.data_type()) {
            (DataType::Float64, DataType::Float64) => Ok(Box::new(DoubleAvg::default())),
            (DataType::Decimal128(_, input_scale), DataType::Decimal128(p, s)) => {
                let DataType::Decimal128(sum_precision, _) = sum_type(input.data_type())? else {
                    return internal_err!("decimal avg sum type");
                };
                Ok(Box::new(DecimalAvg {
                    limit: 10_u128.pow(u32::from(sum_precision)),
                    sum: Some(0),
                    count: 0,
                    sum_precision,
                    sum_scale: *input_scale,
                    result_precision: *p,
                    result_scale: *s,
                    eval_mode: self.eval_mode,
                }))
            }
            (i, r) => internal_err!("avg over {i} returning {r}"),
        }
    }
}

#[derive(Debug)]
struct DoubleAvg {
    /// Spark's buffer starts at 0.0 and only a null merged in makes it null.
    sum: Option<f64>,
    count: i64,
}

impl Default for DoubleAvg {
    fn default() -> Self {
        Self {
            sum: Some(0.0),
            count: 0,
        }
    }
}

impl Accumulator for DoubleAvg {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [values] = values else {
            return internal_err!("avg takes one argument");
        };
        for v in values.as_primitive::<Float64Type>().iter().flatten() {
            self.sum = self.sum.map(|s| s + v);
            self.count += 1;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [sums, counts] = states else {
            return internal_err!("avg state has two columns");
        };
        let (sums, counts) = (
            sums.as_primitive::<Float64Type>(),
            counts.as_primitive::<Int64Type>(),
        );
        for i in 0..sums.len() {
            // Spark's merge is `sum.left + sum.right`: a null side makes the sum null.
            self.sum = match (self.sum, sums.is_valid(i)) {
                (Some(s), true) => Some(s + sums.value(i)),
                _ => None,
            };
            self.count = self.count.wrapping_add(counts.value(i));
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Float64(self.sum),
            ScalarValue::Int64(Some(self.count)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(
            self.sum
                .filter(|_| self.count != 0)
                .map(|s| s / self.count as f64),
        ))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }
}

#[derive(Debug)]
struct DecimalAvg {
    /// `None` once the sum overflowed its precision (Spark's null sum).
    sum: Option<i128>,
    count: i64,
    /// 10^sum_precision: sums at least this large overflow.
    limit: u128,
    sum_precision: u8,
    sum_scale: i8,
    result_precision: u8,
    result_scale: i8,
    eval_mode: EvalMode,
}

impl DecimalAvg {
    fn add(&self, a: Option<i128>, b: i128) -> Option<i128> {
        a.and_then(|a| a.checked_add(b))
            .filter(|v| v.unsigned_abs() < self.limit)
    }
}

impl Accumulator for DecimalAvg {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [values] = values else {
            return internal_err!("avg takes one argument");
        };
        for v in values.as_primitive::<Decimal128Type>().iter().flatten() {
            self.sum = self.add(self.sum, v);
            self.count += 1;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [sums, counts] = states else {
            return internal_err!("avg state has two columns");
        };
        let sums = sums.as_primitive::<Decimal128Type>();
        let counts = counts.as_primitive::<Int64Type>();
        for i in 0..sums.len() {
            self.sum = if sums.is_null(i) {
                None
            } else {
                self.add(self.sum, sums.value(i))
            };
            self.count = self.count.wrapping_add(counts.value(i));
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Decimal128(self.sum, self.sum_precision, self.sum_scale),
            ScalarValue::Int64(Some(self.count)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let null = ScalarValue::Decimal128(None, self.result_precision, self.result_scale);
        let (Some(sum), true) = (self.sum, self.count != 0) else {
            return Ok(null);
        };
        // sum / CAST(count AS decimal(20, 0)), typed by Spark's division rule ...
        let (div_p, div_s) = decimal::divide_result_type(self.sum_precision, self.sum_scale, 20, 0);
        let quotient = match decimal::apply(
            DecimalOp::Divide,
            sum,
            self.sum_scale,
            i128::from(self.count),
            0,
            div_p,
            div_s,
        ) {
            DecimalResult::Value(q) => q,
            _ => return Ok(null),
        };
        // ... then cast to the result type, rounding HALF_UP a second time.
        match decimal::change_precision(quotient, div_s, self.result_precision, self.result_scale) {
            Some(v) => Ok(ScalarValue::Decimal128(
                Some(v),
                self.result_precision,
                self.result_scale,
            )),
            None if self.eval_mode == EvalMode::Ansi => exec_err!(
                "[NUMERIC_VALUE_OUT_OF_RANGE] average does not fit Decimal({}, {})",
                self.result_precision,
                self.result_scale
            ),
            None => Ok(null),
        }
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }
}
