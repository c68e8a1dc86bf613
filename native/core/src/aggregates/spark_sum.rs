//! Spark's `sum` over decimals: the buffer is `(sum: decimal(min(p + 10, 38), s), isEmpty)`,
//! a running sum that no longer fits the buffer's precision becomes null for good, and the
//! final value is null for an empty or overflowed sum (an error in ANSI mode).
//!
//! Integral and floating-point `sum` match DataFusion's `sum` once the input is cast to
//! Spark's result type (long or double), so only decimals need this function.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Decimal128Array};
use arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

use super::selected;
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

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.is_distinct
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let DataType::Decimal128(precision, scale) = *args.return_field.data_type() else {
            return internal_err!("decimal sum returning {}", args.return_field.data_type());
        };
        Ok(Box::new(DecimalSumGroups {
            sums: vec![],
            overflowed: vec![],
            empty: vec![],
            limit: 10_u128.pow(u32::from(precision)),
            precision,
            scale,
            eval_mode: self.eval_mode,
        }))
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

/// The same sum for many groups at once (what hash aggregation with many groups uses).
#[derive(Debug)]
struct DecimalSumGroups {
    sums: Vec<i128>,
    /// The group's running sum overflowed the buffer's precision (Spark's null sum).
    overflowed: Vec<bool>,
    /// No non-null input yet (Spark's `isEmpty`).
    empty: Vec<bool>,
    limit: u128,
    precision: u8,
    scale: i8,
    eval_mode: EvalMode,
}

impl DecimalSumGroups {
    fn resize(&mut self, groups: usize) {
        self.sums.resize(groups, 0);
        self.overflowed.resize(groups, false);
        self.empty.resize(groups, true);
    }

    fn add(&mut self, group: usize, value: i128) {
        if self.overflowed[group] {
            return;
        }
        match self.sums[group]
            .checked_add(value)
            .filter(|v| v.unsigned_abs() < self.limit)
        {
            Some(sum) => self.sums[group] = sum,
            None => self.overflowed[group] = true,
        }
    }
}

impl GroupsAccumulator for DecimalSumGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let [values] = values else {
            return internal_err!("sum takes one argument");
        };
        self.resize(total_num_groups);
        let values = values.as_primitive::<Decimal128Type>();
        for (row, &group) in group_indices.iter().enumerate() {
            if values.is_valid(row) && selected(opt_filter, row) {
                self.empty[group] = false;
                self.add(group, values.value(row));
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let [sums, empties] = values else {
            return internal_err!("sum state has two columns");
        };
        self.resize(total_num_groups);
        let sums = sums.as_primitive::<Decimal128Type>();
        let empties: &BooleanArray = empties.as_boolean();
        for (row, &group) in group_indices.iter().enumerate() {
            // Spark's merge: overflow on either side makes the sum null.
            let other_empty = empties.is_valid(row) && empties.value(row);
            let other_overflowed = !other_empty && sums.is_null(row);
            let this_overflowed = !self.empty[group] && self.overflowed[group];
            if this_overflowed || other_overflowed {
                self.overflowed[group] = true;
            } else if sums.is_valid(row) {
                self.add(group, sums.value(row));
            }
            self.empty[group] = self.empty[group] && other_empty;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sums = emit_to.take_needed(&mut self.sums);
        let overflowed = emit_to.take_needed(&mut self.overflowed);
        let empty = emit_to.take_needed(&mut self.empty);
        let mut out = Vec::with_capacity(sums.len());
        for ((sum, overflowed), empty) in sums.into_iter().zip(overflowed).zip(empty) {
            out.push(if empty {
                None
            } else if overflowed {
                if self.eval_mode == EvalMode::Ansi {
                    return exec_err!(
                        "[ARITHMETIC_OVERFLOW] sum overflowed Decimal({}, {})",
                        self.precision,
                        self.scale
                    );
                }
                None
            } else {
                Some(sum)
            });
        }
        Ok(Arc::new(
            Decimal128Array::from(out).with_precision_and_scale(self.precision, self.scale)?,
        ))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let sums = emit_to.take_needed(&mut self.sums);
        let overflowed = emit_to.take_needed(&mut self.overflowed);
        let empty = emit_to.take_needed(&mut self.empty);
        let sums: Decimal128Array = sums
            .into_iter()
            .zip(&overflowed)
            .map(|(sum, overflowed)| (!overflowed).then_some(sum))
            .collect();
        Ok(vec![
            Arc::new(sums.with_precision_and_scale(self.precision, self.scale)?),
            Arc::new(BooleanArray::from(empty)),
        ])
    }

    /// Each input row as its own buffer (for DataFusion skipping partial aggregation).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let [values] = values else {
            return internal_err!("sum takes one argument");
        };
        let values = values.as_primitive::<Decimal128Type>();
        let counted = |row: usize| values.is_valid(row) && selected(opt_filter, row);
        let sums: Decimal128Array = (0..values.len())
            .map(|row| Some(if counted(row) { values.value(row) } else { 0 }))
            .collect();
        let empty: BooleanArray = (0..values.len()).map(|row| Some(!counted(row))).collect();
        Ok(vec![
            Arc::new(sums.with_precision_and_scale(self.precision, self.scale)?),
            Arc::new(empty),
        ])
    }

    fn size(&self) -> usize {
        self.sums.capacity() * size_of::<i128>()
            + self.overflowed.capacity()
            + self.empty.capacity()
    }
}
