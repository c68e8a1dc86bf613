//! Spark's `avg`: the buffer is `(sum, count: long)` where `sum` is a double, or for
//! `decimal(p, s)` input a `decimal(min(p + 10, 38), s)` that turns null on overflow. The
//! final value is null when nothing was counted; for decimals it is Spark's
//! `CAST(sum / CAST(count AS decimal(20, 0)) AS decimal(p + 4, s + 4))`, rounding HALF_UP
//! at the division's scale and again at the result's, exactly as Spark does.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, PrimitiveArray,
};
use arrow::datatypes::{
    ArrowNativeType, ArrowPrimitiveType, DataType, Decimal128Type, Field, FieldRef, Float64Type,
};
use datafusion::common::cast::{as_int64_array, as_primitive_array};
use datafusion::common::{Result, ScalarValue, exec_err, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

use super::{for_each_counted, selected};
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
        Ok(match self.avg_type(&args)? {
            AvgType::Double => Box::new(Avg::<DoubleBuffer>::new(())),
            AvgType::Decimal(ty) => Box::new(Avg::<DecimalBuffer>::new(ty)),
        })
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.is_distinct
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(match self.avg_type(&args)? {
            AvgType::Double => Box::new(AvgGroups::<DoubleBuffer>::new(())),
            AvgType::Decimal(ty) => Box::new(AvgGroups::<DecimalBuffer>::new(ty)),
        })
    }
}

impl SparkAvg {
    fn avg_type(&self, args: &AccumulatorArgs) -> Result<AvgType> {
        let [input] = args.expr_fields else {
            return internal_err!("avg takes one argument");
        };
        match (input.data_type(), args.return_field.data_type()) {
            (DataType::Float64, DataType::Float64) => Ok(AvgType::Double),
            (DataType::Decimal128(_, input_scale), DataType::Decimal128(p, s)) => {
                let DataType::Decimal128(sum_precision, _) = sum_type(input.data_type())? else {
                    return internal_err!("decimal avg sum type");
                };
                Ok(AvgType::Decimal(DecimalAvgType {
                    limit: 10_u128.pow(u32::from(sum_precision)),
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

enum AvgType {
    Double,
    Decimal(DecimalAvgType),
}

/// Spark's merge is `sum.left + sum.right`: a null side makes the sum null.
fn merge_double(sum: Option<f64>, other: Option<f64>) -> Option<f64> {
    sum.zip(other).map(|(a, b)| a + b)
}

fn double_result(sum: Option<f64>, count: i64) -> Option<f64> {
    sum.filter(|_| count != 0).map(|s| s / count as f64)
}

/// The types of a decimal `avg`: its buffer's sum and its result.
#[derive(Debug, Clone, Copy)]
struct DecimalAvgType {
    /// 10^sum_precision: sums at least this large overflow.
    limit: u128,
    sum_precision: u8,
    sum_scale: i8,
    result_precision: u8,
    result_scale: i8,
    eval_mode: EvalMode,
}

impl DecimalAvgType {
    /// Adds to a running sum; `None` (Spark's null sum) once it overflows.
    fn add(&self, sum: Option<i128>, value: i128) -> Option<i128> {
        sum.and_then(|a| a.checked_add(value))
            .filter(|v| v.unsigned_abs() < self.limit)
    }

    /// Merges another buffer's sum: a null (overflowed) side makes the sum null.
    fn merge(&self, sum: Option<i128>, other: Option<i128>) -> Option<i128> {
        other.and_then(|o| self.add(sum, o))
    }

    /// `CAST(sum / CAST(count AS decimal(20, 0)) AS result type)`; null when nothing was
    /// counted or the sum overflowed.
    fn result(&self, sum: Option<i128>, count: i64) -> Result<Option<i128>> {
        let (Some(sum), true) = (sum, count != 0) else {
            return Ok(None);
        };
        // sum / CAST(count AS decimal(20, 0)), typed by Spark's division rule ...
        let (div_p, div_s) = decimal::divide_result_type(self.sum_precision, self.sum_scale, 20, 0);
        let quotient = match decimal::apply(
            DecimalOp::Divide,
            sum,
            self.sum_scale,
            i128::from(count),
            0,
            div_p,
            div_s,
        ) {
            DecimalResult::Value(q) => q,
            _ => return Ok(None),
        };
        // ... then cast to the result type, rounding HALF_UP a second time.
        match decimal::change_precision(quotient, div_s, self.result_precision, self.result_scale) {
            Some(v) => Ok(Some(v)),
            None if self.eval_mode == EvalMode::Ansi => exec_err!(
                "[NUMERIC_VALUE_OUT_OF_RANGE] average does not fit Decimal({}, {})",
                self.result_precision,
                self.result_scale
            ),
            None => Ok(None),
        }
    }
}

/// One kind of `avg` buffer for [`Avg`] and [`AvgGroups`]: how to add, merge, and turn sums
/// into arrays.
trait AvgBuffer {
    type Sum: ArrowNativeType + Default;
    /// The Arrow type of both the input values and the buffer's sum.
    type Arrow: ArrowPrimitiveType<Native = Self::Sum>;
    type Type: Copy + std::fmt::Debug;
    const START: Option<Self::Sum>;

    fn add(ty: &Self::Type, sum: Option<Self::Sum>, value: Self::Sum) -> Option<Self::Sum>;
    fn merge(
        ty: &Self::Type,
        sum: Option<Self::Sum>,
        other: Option<Self::Sum>,
    ) -> Option<Self::Sum>;
    fn sums(ty: &Self::Type, sums: Vec<Option<Self::Sum>>) -> Result<ArrayRef>;
    fn results(ty: &Self::Type, sums: Vec<Option<Self::Sum>>, counts: &[i64]) -> Result<ArrayRef>;
}

fn value<T: ArrowPrimitiveType>(array: &PrimitiveArray<T>, row: usize) -> Option<T::Native> {
    array.is_valid(row).then(|| array.value(row))
}

#[derive(Debug)]
struct DoubleBuffer;

impl AvgBuffer for DoubleBuffer {
    type Sum = f64;
    type Arrow = Float64Type;
    type Type = ();
    /// Spark's double buffer starts at 0.0 and only a null merged in makes it null.
    const START: Option<f64> = Some(0.0);

    fn add(_: &(), sum: Option<f64>, value: f64) -> Option<f64> {
        sum.map(|s| s + value)
    }
    fn merge(_: &(), sum: Option<f64>, other: Option<f64>) -> Option<f64> {
        merge_double(sum, other)
    }
    fn sums(_: &(), sums: Vec<Option<f64>>) -> Result<ArrayRef> {
        Ok(Arc::new(Float64Array::from(sums)))
    }
    fn results(_: &(), sums: Vec<Option<f64>>, counts: &[i64]) -> Result<ArrayRef> {
        let out: Float64Array = sums
            .into_iter()
            .zip(counts)
            .map(|(s, &c)| double_result(s, c))
            .collect();
        Ok(Arc::new(out))
    }
}

#[derive(Debug)]
struct DecimalBuffer;

impl AvgBuffer for DecimalBuffer {
    type Sum = i128;
    type Arrow = Decimal128Type;
    type Type = DecimalAvgType;
    const START: Option<i128> = Some(0);

    fn add(ty: &DecimalAvgType, sum: Option<i128>, value: i128) -> Option<i128> {
        ty.add(sum, value)
    }
    fn merge(ty: &DecimalAvgType, sum: Option<i128>, other: Option<i128>) -> Option<i128> {
        ty.merge(sum, other)
    }
    fn sums(ty: &DecimalAvgType, sums: Vec<Option<i128>>) -> Result<ArrayRef> {
        Ok(Arc::new(
            Decimal128Array::from(sums).with_precision_and_scale(ty.sum_precision, ty.sum_scale)?,
        ))
    }
    fn results(ty: &DecimalAvgType, sums: Vec<Option<i128>>, counts: &[i64]) -> Result<ArrayRef> {
        let out = sums
            .into_iter()
            .zip(counts)
            .map(|(s, &c)| ty.result(s, c))
            .collect::<Result<Decimal128Array>>()?;
        Ok(Arc::new(out.with_precision_and_scale(
            ty.result_precision,
            ty.result_scale,
        )?))
    }
}

/// `avg` of one group (aggregation without grouping keys): one `(sum, count)` buffer.
#[derive(Debug)]
struct Avg<B: AvgBuffer> {
    ty: B::Type,
    /// `None` once Spark's sum is null (a null merged in, or a decimal overflow).
    sum: Option<B::Sum>,
    count: i64,
}

impl<B: AvgBuffer> Avg<B> {
    fn new(ty: B::Type) -> Self {
        Self {
            ty,
            sum: B::START,
            count: 0,
        }
    }
}

impl<B: AvgBuffer + std::fmt::Debug + Send + Sync + 'static> Accumulator for Avg<B>
where
    B::Type: Send + Sync,
    B::Sum: Send + Sync,
{
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [values] = values else {
            return internal_err!("avg takes one argument");
        };
        for v in as_primitive_array::<B::Arrow>(values)?.iter().flatten() {
            self.sum = B::add(&self.ty, self.sum, v);
            self.count += 1;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [sums, counts] = states else {
            return internal_err!("avg state has two columns");
        };
        let (sums, counts) = (
            as_primitive_array::<B::Arrow>(sums)?,
            as_int64_array(counts)?,
        );
        for row in 0..sums.len() {
            self.sum = B::merge(&self.ty, self.sum, value(sums, row));
            self.count = self.count.wrapping_add(counts.value(row));
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::try_from_array(&B::sums(&self.ty, vec![self.sum])?, 0)?,
            ScalarValue::Int64(Some(self.count)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::try_from_array(&B::results(&self.ty, vec![self.sum], &[self.count])?, 0)
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }
}

/// One group's `(sum, count)` buffer, kept together so that a row touches one place in
/// memory (grouped aggregation over many groups is bound by those accesses).
#[derive(Debug, Clone, Copy)]
struct AvgSlot<S> {
    sum: S,
    /// Spark's sum is null: a null merged in, or a decimal overflow.
    sum_null: bool,
    count: i64,
}

impl<S: Copy + Default> AvgSlot<S> {
    fn new(sum: Option<S>) -> Self {
        Self {
            sum: sum.unwrap_or_default(),
            sum_null: sum.is_none(),
            count: 0,
        }
    }

    fn sum(&self) -> Option<S> {
        (!self.sum_null).then_some(self.sum)
    }

    fn set_sum(&mut self, sum: Option<S>) {
        self.sum = sum.unwrap_or_default();
        self.sum_null = sum.is_none();
    }
}

/// `avg` for many groups at once (what hash aggregation with many groups uses): one
/// `(sum, count)` buffer per group, with exactly the single-group accumulators' semantics.
#[derive(Debug)]
struct AvgGroups<B: AvgBuffer> {
    ty: B::Type,
    slots: Vec<AvgSlot<B::Sum>>,
}

impl<B: AvgBuffer> AvgGroups<B> {
    fn new(ty: B::Type) -> Self {
        Self { ty, slots: vec![] }
    }

    fn resize(&mut self, groups: usize) {
        self.slots.resize(groups, AvgSlot::new(B::START));
    }

    fn add(&mut self, group: usize, value: B::Sum) {
        let slot = &mut self.slots[group];
        slot.set_sum(B::add(&self.ty, slot.sum(), value));
        slot.count += 1;
    }

    fn take(&mut self, emit_to: EmitTo) -> (Vec<Option<B::Sum>>, Vec<i64>) {
        emit_to
            .take_needed(&mut self.slots)
            .iter()
            .map(|slot| (slot.sum(), slot.count))
            .unzip()
    }
}

impl<B: AvgBuffer + std::fmt::Debug + Send + Sync + 'static> GroupsAccumulator for AvgGroups<B>
where
    B::Type: Send + Sync,
    B::Sum: Send + Sync,
{
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let [values] = values else {
            return internal_err!("avg takes one argument");
        };
        let values = as_primitive_array::<B::Arrow>(values)?;
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
        let [sums, counts] = values else {
            return internal_err!("avg state has two columns");
        };
        let (sums, counts) = (
            as_primitive_array::<B::Arrow>(sums)?,
            as_int64_array(counts)?,
        );
        self.resize(total_num_groups);
        for (row, &group) in group_indices.iter().enumerate() {
            let slot = &mut self.slots[group];
            slot.set_sum(B::merge(&self.ty, slot.sum(), value(sums, row)));
            slot.count = slot.count.wrapping_add(counts.value(row));
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (sums, counts) = self.take(emit_to);
        B::results(&self.ty, sums, &counts)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (sums, counts) = self.take(emit_to);
        Ok(vec![
            B::sums(&self.ty, sums)?,
            Arc::new(Int64Array::from(counts)),
        ])
    }

    /// Each input row as its own buffer (for DataFusion skipping partial aggregation).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let [values] = values else {
            return internal_err!("avg takes one argument");
        };
        let values = as_primitive_array::<B::Arrow>(values)?;
        let counted = |row: usize| value(values, row).filter(|_| selected(opt_filter, row));
        let sums = (0..values.len())
            .map(|row| counted(row).or(B::START))
            .collect();
        let counts: Int64Array = (0..values.len())
            .map(|row| Some(i64::from(counted(row).is_some())))
            .collect();
        Ok(vec![B::sums(&self.ty, sums)?, Arc::new(counts)])
    }

    fn size(&self) -> usize {
        self.slots.capacity() * size_of::<AvgSlot<B::Sum>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    fn decimal_type() -> DecimalAvgType {
        DecimalAvgType {
            limit: 10_u128.pow(12),
            sum_precision: 12,
            sum_scale: 2,
            result_precision: 16,
            result_scale: 6,
            eval_mode: EvalMode::Legacy,
        }
    }

    /// Grouped buffers give what one accumulator per group gives, through update, state,
    /// merge and evaluate, including nulls and a sum that overflows its precision.
    #[test]
    fn groups_agree_with_single_accumulators() -> Result<()> {
        let ty = decimal_type();
        let values: ArrayRef = Arc::new(
            Decimal128Array::from(vec![
                Some(150),
                None,
                Some(-25),
                Some(999_999_999_999),
                Some(1),
                Some(7),
            ])
            .with_precision_and_scale(10, 2)?,
        );
        let groups = [0, 0, 1, 2, 2, 1];
        let mut grouped = AvgGroups::<DecimalBuffer>::new(ty);
        grouped.update_batch(std::slice::from_ref(&values), &groups, None, 3)?;
        let state = grouped.state(EmitTo::All)?;
        let mut merged = AvgGroups::<DecimalBuffer>::new(ty);
        merged.merge_batch(&state, &[0, 1, 2], 3)?;
        merged.merge_batch(&state, &[0, 1, 2], 3)?;
        let results = merged.evaluate(EmitTo::All)?;
        let results = results.as_primitive::<Decimal128Type>();
        for group in 0..3 {
            let rows: Vec<usize> = (0..groups.len()).filter(|&r| groups[r] == group).collect();
            let mut single = Avg::<DecimalBuffer>::new(ty);
            single.update_batch(&[values.slice(rows[0], 1)])?;
            single.update_batch(&[values.slice(rows[1], 1)])?;
            let state: Vec<ArrayRef> = single
                .state()?
                .iter()
                .map(|v| v.to_array())
                .collect::<Result<_>>()?;
            let mut twice = Avg::<DecimalBuffer>::new(ty);
            twice.merge_batch(&state)?;
            twice.merge_batch(&state)?;
            let ScalarValue::Decimal128(expected, ..) = twice.evaluate()? else {
                return internal_err!("decimal avg result");
            };
            let actual = results.is_valid(group).then(|| results.value(group));
            assert_eq!(actual, expected, "group {group}");
        }
        // Group 2's sum overflowed decimal(12, 2): null, as in Spark.
        assert!(results.is_null(2));
        assert!(results.is_valid(0));
        Ok(())
    }

    #[test]
    fn double_groups_keep_sparks_null_merge() -> Result<()> {
        let mut grouped = AvgGroups::<DoubleBuffer>::new(());
        let sums: ArrayRef = Arc::new(Float64Array::from(vec![Some(3.0), None]));
        let counts: ArrayRef = Arc::new(Int64Array::from(vec![2, 1]));
        grouped.merge_batch(&[sums, counts], &[0, 0], 2)?;
        let results = grouped.evaluate(EmitTo::All)?;
        let results = results.as_primitive::<Float64Type>();
        // A null sum merged in makes the group's sum null; a group without rows is null.
        assert!(results.is_null(0) && results.is_null(1));
        Ok(())
    }
}
