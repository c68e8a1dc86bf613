//! Spark's `CAST` for the conversions whose Arrow behaviour matches Spark's, plus
//! Spark-exact decimal rescaling (HALF_UP, null or error on overflow).

use std::fmt::{self, Display, Formatter};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Decimal128Array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Decimal128Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema,
};
use datafusion::common::{Result, exec_err, internal_err};
use datafusion::physical_expr::PhysicalExpr;

use super::arithmetic::EvalMode;
use super::kernel_expr::{ArrayKernel, KernelExpr};
use crate::kernels::decimal;

/// Whether `from -> to` is a cast this crate evaluates exactly as Spark does.
pub fn is_supported_cast(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    from == to
        || matches!(
            (from, to),
            (
                Int8 | Int16 | Int32 | Int64 | Decimal128(..),
                Decimal128(..)
            ) | (Int8, Int16 | Int32 | Int64)
                | (Int16, Int32 | Int64)
                | (Int32, Int64)
                | (Int8 | Int16 | Int32 | Int64, Float32 | Float64)
                | (Float32, Float64)
                | (Null, _)
        )
}

/// `CAST(child AS to)` with Spark semantics, rejecting conversions whose semantics are not
/// Spark-exact here.
pub fn spark_cast(
    child: Arc<dyn PhysicalExpr>,
    to: DataType,
    eval_mode: EvalMode,
    input_schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    KernelExpr::try_new(child, SparkCast { to, eval_mode }, input_schema)
}

/// The cast kernel: the target type and how overflow is reported.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SparkCast {
    to: DataType,
    eval_mode: EvalMode,
}

impl SparkCast {
    fn to_decimal(&self, array: &ArrayRef, precision: u8, scale: i8) -> Result<ArrayRef> {
        let (values, from_scale): (Vec<Option<i128>>, i8) = match array.data_type() {
            DataType::Decimal128(_, s) => {
                (array.as_primitive::<Decimal128Type>().iter().collect(), *s)
            }
            DataType::Int8 => (widen(array.as_primitive::<Int8Type>()), 0),
            DataType::Int16 => (widen(array.as_primitive::<Int16Type>()), 0),
            DataType::Int32 => (widen(array.as_primitive::<Int32Type>()), 0),
            DataType::Int64 => (widen(array.as_primitive::<Int64Type>()), 0),
            t => return internal_err!("cast from {t} to decimal"),
        };
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            let converted = match v {
                None => None,
                Some(v) => match decimal::change_precision(v, from_scale, precision, scale) {
                    Some(v) => Some(v),
                    None if self.eval_mode == EvalMode::Ansi => {
                        return exec_err!(
                            "[NUMERIC_VALUE_OUT_OF_RANGE] {v} (scale {from_scale}) cannot be \
                             represented as Decimal({precision}, {scale})"
                        );
                    }
                    None => None,
                },
            };
            out.push(converted);
        }
        Ok(Arc::new(
            Decimal128Array::from(out).with_precision_and_scale(precision, scale)?,
        ))
    }
}

fn widen<T>(array: &arrow::array::PrimitiveArray<T>) -> Vec<Option<i128>>
where
    T: arrow::datatypes::ArrowPrimitiveType,
    T::Native: Into<i128>,
{
    array.iter().map(|v| v.map(Into::into)).collect()
}

impl Display for SparkCast {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "CAST AS {}", self.to)
    }
}

impl ArrayKernel for SparkCast {
    fn return_type(&self, input: &DataType) -> Result<DataType> {
        if is_supported_cast(input, &self.to) {
            Ok(self.to.clone())
        } else {
            exec_err!("unsupported cast from {input} to {}", self.to)
        }
    }

    // Decimal overflow turns into null outside ANSI mode.
    fn introduces_nulls(&self) -> bool {
        matches!(self.to, DataType::Decimal128(..))
    }

    fn apply(&self, array: &ArrayRef) -> Result<ArrayRef> {
        if array.data_type() == &self.to {
            return Ok(Arc::clone(array));
        }
        match self.to {
            DataType::Decimal128(p, s) if !array.data_type().is_null() => {
                self.to_decimal(array, p, s)
            }
            // Widening integer and integer-to-float casts are exact (or IEEE rounding, as in
            // Java) in both engines.
            _ => Ok(cast_with_options(array, &self.to, &CastOptions::default())?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::Field;
    use arrow::record_batch::RecordBatch;
    use datafusion::physical_expr::expressions::col;

    #[test]
    fn decimal_rescale_rounds_half_up_and_nulls_overflow() -> Result<()> {
        let schema = Schema::new(vec![Field::new("d", DataType::Decimal128(5, 3), true)]);
        let input = Decimal128Array::from(vec![Some(12345), Some(-12345), Some(99999), None])
            .with_precision_and_scale(5, 3)?;
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(input)])?;
        let cast = spark_cast(
            col("d", &schema)?,
            DataType::Decimal128(3, 2),
            EvalMode::Legacy,
            &schema,
        )?;
        let out = cast.evaluate(&batch)?.into_array(4)?;
        let out = out.as_primitive::<Decimal128Type>();
        // 12.345 -> 12.35 does not fit decimal(3,2): null; -12.345 likewise; 99.999 likewise.
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![None, None, None, None]);

        let cast = spark_cast(
            col("d", &schema)?,
            DataType::Decimal128(4, 2),
            EvalMode::Legacy,
            &schema,
        )?;
        let out = cast.evaluate(&batch)?.into_array(4)?;
        let out = out.as_primitive::<Decimal128Type>();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some(1235), Some(-1235), None, None]
        );

        let ansi = spark_cast(
            col("d", &schema)?,
            DataType::Decimal128(4, 2),
            EvalMode::Ansi,
            &schema,
        )?;
        assert!(ansi.evaluate(&batch).is_err());
        Ok(())
    }

    #[test]
    fn int_to_decimal_checks_precision() -> Result<()> {
        let schema = Schema::new(vec![Field::new("i", DataType::Int32, true)]);
        let input = Int32Array::from(vec![Some(1), Some(-100), None]);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(input)])?;
        let cast = spark_cast(
            col("i", &schema)?,
            DataType::Decimal128(3, 1),
            EvalMode::Legacy,
            &schema,
        )?;
        let out = cast.evaluate(&batch)?.into_array(3)?;
        let out = out.as_primitive::<Decimal128Type>();
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![Some(10), None, None]);
        Ok(())
    }

    #[test]
    fn unsupported_casts_are_rejected() {
        let schema = Schema::new(vec![Field::new("s", DataType::Utf8, true)]);
        let expr = col("s", &schema).unwrap();
        assert!(spark_cast(expr, DataType::Int32, EvalMode::Legacy, &schema).is_err());
    }
}
