//! Spark's `NormalizeNaNAndZero`: every NaN becomes the canonical NaN and -0.0 becomes 0.0.
//!
//! Spark compares, groups and sorts floating-point values treating all NaNs as one value
//! greater than any other, and -0.0 as equal to 0.0. Arrow orders floats by IEEE total
//! order, which agrees once values are normalized this way (a negative NaN, as x86 produces
//! for 0.0 / 0.0, would otherwise sort below every number).

use std::fmt::{self, Display, Formatter};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, PrimitiveArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Schema};
use datafusion::common::{Result, exec_err, internal_err};
use datafusion::physical_expr::PhysicalExpr;

use super::kernel_expr::{ArrayKernel, KernelExpr};

/// The kernel: NaN and -0.0 normalized in Float32 or Float64 arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NormalizeNanAndZero;

/// `NormalizeNaNAndZero(child)` for a floating-point `child`.
pub fn normalize_nan_and_zero(
    child: Arc<dyn PhysicalExpr>,
    input_schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    KernelExpr::try_new(child, NormalizeNanAndZero, input_schema)
}

/// `expr`, normalized if it is floating point.
pub fn normalize_if_float(
    expr: Arc<dyn PhysicalExpr>,
    input_schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    match expr.data_type(input_schema)? {
        DataType::Float32 | DataType::Float64 => normalize_nan_and_zero(expr, input_schema),
        _ => Ok(expr),
    }
}

impl Display for NormalizeNanAndZero {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "normalize_nan_and_zero")
    }
}

impl ArrayKernel for NormalizeNanAndZero {
    fn return_type(&self, input: &DataType) -> Result<DataType> {
        match input {
            DataType::Float32 | DataType::Float64 => Ok(input.clone()),
            t => exec_err!("NormalizeNaNAndZero of {t}"),
        }
    }

    fn apply(&self, array: &ArrayRef) -> Result<ArrayRef> {
        Ok(match array.data_type() {
            DataType::Float64 => {
                let a = array.as_primitive::<Float64Type>();
                let normalized: PrimitiveArray<Float64Type> =
                    a.unary(|v| if v.is_nan() { f64::NAN } else { v + 0.0 });
                Arc::new(normalized)
            }
            DataType::Float32 => {
                let a = array.as_primitive::<Float32Type>();
                let normalized: PrimitiveArray<Float32Type> =
                    a.unary(|v| if v.is_nan() { f32::NAN } else { v + 0.0 });
                Arc::new(normalized)
            }
            t => return internal_err!("NormalizeNaNAndZero of {t}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, RecordBatch};
    use arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::col;

    #[test]
    fn nans_and_zeros_are_canonical() -> Result<()> {
        let schema = Schema::new(vec![Field::new("d", DataType::Float64, true)]);
        let negative_nan = f64::from_bits(f64::NAN.to_bits() | (1 << 63));
        let input = Float64Array::from(vec![Some(-0.0), Some(negative_nan), Some(1.5), None]);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(input)])?;
        let expr = normalize_nan_and_zero(col("d", &schema)?, &schema)?;
        let out = expr.evaluate(&batch)?.into_array(4)?;
        let out = out.as_primitive::<Float64Type>();
        assert_eq!(out.value(0).to_bits(), 0.0_f64.to_bits());
        assert_eq!(out.value(1).to_bits(), f64::NAN.to_bits());
        assert_eq!(out.value(2), 1.5);
        assert!(out.is_null(3));
        Ok(())
    }
}
