//! Spark's `sum` over decimals: the buffer is `(sum: decimal(min(p + 10, 38), s), isEmpty)`,
//! a running sum that no longer fits the buffer's precision becomes null for good, and the
//! final value is null for an empty or overflowed sum (an error in ANSI mode).
//!
//! Integral and floating-point `sum` match DataFusion's `sum` once the input is cast to
//! Spark's result type (long or double), so only decimals need this function.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Decimal128Array};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::cast::{as_boolean_array, as_decimal128_array};
use datafusion::common::{Result, ScalarValue, exec_err, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

use super::{for_each_counted, selected};
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
            slots: vec![],
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
        for v in as_decimal128_array(values)?.iter().flatten() {
            self.is_empty = false;
            self.sum = self.sum.and_then(|s| self.add(s, v));
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [sums, empties] = states else {
            return internal_err!("sum state has two columns");
        };
        let (sums, empties) = (as_decimal128_array(sums)?, as_boolean_array(empties)?);
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

/// One group's running sum, kept together so that a row touches one place in memory.
#[derive(Debug, Clone, Copy)]
struct SumSlot {
    /// The sum's low and high 64 bits: an `i128` field would align the slot to 16 bytes and
    /// pad it to 32 instead of 24.
    sum: [u64; 2],
    /// The running sum overflowed the buffer's precision (Spark's null sum).
    overflowed: bool,
    /// No non-null input yet (Spark's `isEmpty`).
    empty: bool,
}

impl SumSlot {
    fn sum(&self) -> i128 {
        (i128::from(self.sum[1] as i64) << 64) | i128::from(self.sum[0])
    }

    fn set_sum(&mut self, sum: i128) {
        self.sum = [sum as u64, (sum >> 64) as u64];
    }
}

const EMPTY_SUM: SumSlot = SumSlot {
    sum: [0, 0],
    overflowed: false,
    empty: true,
};

/// The same sum for many groups at once (what hash aggregation with many groups uses).
#[derive(Debug)]
struct DecimalSumGroups {
    slots: Vec<SumSlot>,
    limit: u128,
    precision: u8,
    scale: i8,
    eval_mode: EvalMode,
}

impl DecimalSumGroups {
    fn resize(&mut self, groups: usize) {
        self.slots.resize(groups, EMPTY_SUM);
    }

    /// Adds a non-null input value (or another buffer's non-overflowed sum).
    fn add(&mut self, group: usize, value: i128) {
        let limit = self.limit;
        let slot = &mut self.slots[group];
        slot.empty = false;
        if slot.overflowed {
            return;
        }
        match slot
            .sum()
            .checked_add(value)
            .filter(|v| v.unsigned_abs() < limit)
        {
            Some(sum) => slot.set_sum(sum),
            None => slot.overflowed = true,
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
        let values = as_decimal128_array(values)?;
        self.resize(total_num_groups);
        for_each_counted(values, group_indices, opt_filter, |group, v| {
            self.add(group, v)
        });
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
        let (sums, empties) = (as_decimal128_array(sums)?, as_boolean_array(empties)?);
        self.resize(total_num_groups);
        for (row, &group) in group_indices.iter().enumerate() {
            // Spark's merge: overflow on either side makes the sum null.
            let other_empty = empties.is_valid(row) && empties.value(row);
            let other_overflowed = !other_empty && sums.is_null(row);
            let slot = self.slots[group];
            let this_overflowed = !slot.empty && slot.overflowed;
            if this_overflowed || other_overflowed {
                self.slots[group].overflowed = true;
            } else if sums.is_valid(row) {
                self.add(group, sums.value(row));
            }
            self.slots[group].empty = slot.empty && other_empty;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let slots = emit_to.take_needed(&mut self.slots);
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            out.push(if slot.empty {
                None
            } else if slot.overflowed {
                if self.eval_mode == EvalMode::Ansi {
                    return exec_err!(
                        "[ARITHMETIC_OVERFLOW] sum overflowed Decimal({}, {})",
                        self.precision,
                        self.scale
                    );
                }
                None
            } else {
                Some(slot.sum())
            });
        }
        Ok(Arc::new(
            Decimal128Array::from(out).with_precision_and_scale(self.precision, self.scale)?,
        ))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let slots = emit_to.take_needed(&mut self.slots);
        let sums: Decimal128Array = slots
            .iter()
            .map(|slot| (!slot.overflowed).then(|| slot.sum()))
            .collect();
        let empty: BooleanArray = slots.iter().map(|slot| Some(slot.empty)).collect();
        Ok(vec![
            Arc::new(sums.with_precision_and_scale(self.precision, self.scale)?),
            Arc::new(empty),
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
        let values = as_decimal128_array(values)?;
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
        self.slots.capacity() * size_of::<SumSlot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Decimal128Type;

    fn groups(precision: u8) -> DecimalSumGroups {
        DecimalSumGroups {
            slots: vec![],
            limit: 10_u128.pow(u32::from(precision)),
            precision,
            scale: 2,
            eval_mode: EvalMode::Legacy,
        }
    }

    fn single(precision: u8) -> DecimalSumAccumulator {
        DecimalSumAccumulator {
            sum: Some(0),
            is_empty: true,
            limit: 10_u128.pow(u32::from(precision)),
            precision,
            scale: 2,
            eval_mode: EvalMode::Legacy,
        }
    }

    fn decimals(values: Vec<Option<i128>>) -> Result<ArrayRef> {
        Ok(Arc::new(
            Decimal128Array::from(values).with_precision_and_scale(12, 2)?,
        ))
    }

    #[test]
    fn slot_keeps_all_128_bits() {
        let extremes = [0, 1, -1, 1 << 64, -(1 << 64), i128::MAX, i128::MIN];
        for v in extremes
            .into_iter()
            .chain([10_i128.pow(38) - 1, 1 - 10_i128.pow(38)])
        {
            let mut slot = EMPTY_SUM;
            slot.set_sum(v);
            assert_eq!(slot.sum(), v);
        }
        assert_eq!(size_of::<SumSlot>(), 24);
    }

    /// Grouped sums give what one accumulator per group gives, through update (with and
    /// without nulls and a filter), state, merge and evaluate, including a sum that overflows
    /// its precision and a group that saw only nulls.
    #[test]
    fn groups_agree_with_single_accumulators() -> Result<()> {
        let batches = [
            // No nulls, no filter: the fast path.
            (
                decimals(vec![Some(150), Some(-25), Some(999_999_999_990), Some(7)])?,
                vec![0, 1, 2, 1],
                None,
            ),
            // Nulls and a filter.
            (
                decimals(vec![None, Some(1), Some(20), Some(5), None])?,
                vec![3, 2, 0, 1, 3],
                Some(BooleanArray::from(vec![true, true, true, false, true])),
            ),
        ];
        let precision = 12;
        let mut grouped = groups(precision);
        for (values, group_indices, filter) in &batches {
            grouped.update_batch(
                std::slice::from_ref(values),
                group_indices,
                filter.as_ref(),
                4,
            )?;
        }
        let state = grouped.state(EmitTo::All)?;
        let mut merged = groups(precision);
        merged.merge_batch(&state, &[0, 1, 2, 3], 4)?;
        merged.merge_batch(&state, &[0, 1, 2, 3], 4)?;
        let results = merged.evaluate(EmitTo::All)?;
        let results = results.as_primitive::<Decimal128Type>();
        for group in 0..4 {
            let mut one = single(precision);
            for (values, group_indices, filter) in &batches {
                for (row, &g) in group_indices.iter().enumerate() {
                    if g == group && selected(filter.as_ref(), row) {
                        one.update_batch(&[values.slice(row, 1)])?;
                    }
                }
            }
            let state: Vec<ArrayRef> = one
                .state()?
                .iter()
                .map(|v| v.to_array())
                .collect::<Result<_>>()?;
            let mut twice = single(precision);
            twice.merge_batch(&state)?;
            twice.merge_batch(&state)?;
            let ScalarValue::Decimal128(expected, ..) = twice.evaluate()? else {
                return internal_err!("decimal sum result");
            };
            let actual = results.is_valid(group).then(|| results.value(group));
            assert_eq!(actual, expected, "group {group}");
        }
        // 0: (150 + 20) * 2; 1: (-25 + 7) * 2 (5 filtered out); 2: overflowed decimal(12, 2)
        // when merged twice; 3: only nulls.
        assert_eq!(results.value(0), 340);
        assert_eq!(results.value(1), -36);
        assert!(results.is_null(2) && results.is_null(3));
        Ok(())
    }
}
