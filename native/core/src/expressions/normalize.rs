//! Spark's `NormalizeNaNAndZero`: every NaN becomes the canonical NaN and -0.0 becomes 0.0.
//!
//! Spark compares, groups and sorts floating-point values treating all NaNs as one value
//! greater than any other, and -0.0 as equal to 0.0. Arrow orders floats by IEEE total
//! order, which agrees once values are normalized this way (a negative NaN, as x86 produces
//! for 0.0 / 0.0, would otherwise sort below every number).

use std::fmt::{self, Display, Formatter};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, PrimitiveArray};
use arrow::datatypes::{DataType, Field, FieldRef, Float32Type, Float64Type, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err, internal_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

/// Normalizes NaN and -0.0 in a Float32 or Float64 expression.
#[derive(Debug, Clone)]
pub struct NormalizeNanAndZero {
    child: Arc<dyn PhysicalExpr>,
}

impl NormalizeNanAndZero {
    pub fn try_new(child: Arc<dyn PhysicalExpr>, input_schema: &Schema) -> Result<Self> {
        match child.data_type(input_schema)? {
            DataType::Float32 | DataType::Float64 => Ok(Self { child }),
            t => exec_err!("NormalizeNaNAndZero of {t}"),
        }
    }
}

/// `expr`, normalized if it is floating point.
pub fn normalize_if_float(
    expr: Arc<dyn PhysicalExpr>,
    input_schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    Ok(match expr.data_type(input_schema)? {
        DataType::Float32 | DataType::Float64 => {
            Arc::new(NormalizeNanAndZero::try_new(expr, input_schema)?)
        }
        _ => expr,
    })
}

impl PartialEq for NormalizeNanAndZero {
    fn eq(&self, other: &Self) -> bool {
        self.child.as_ref() == other.child.as_ref()
    }
}

impl Eq for NormalizeNanAndZero {}

impl Hash for NormalizeNanAndZero {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.child.hash(state);
    }
}

impl Display for NormalizeNanAndZero {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "normalize_nan_and_zero({})", self.child)
    }
}

impl PhysicalExpr for NormalizeNanAndZero {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            self.to_string(),
            self.child.data_type(input_schema)?,
            self.child.nullable(input_schema)?,
        )))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let array = self.child.evaluate(batch)?.into_array(batch.num_rows())?;
        let out: ArrayRef = match array.data_type() {
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
        };
        Ok(ColumnarValue::Array(out))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.child]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [child]: [Arc<dyn PhysicalExpr>; 1] = children
            .try_into()
            .or_else(|_| internal_err!("NormalizeNaNAndZero takes one child"))?;
        Ok(Arc::new(Self { child }))
    }

    fn fmt_sql(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array};
    use datafusion::physical_expr::expressions::col;

    #[test]
    fn nans_and_zeros_are_canonical() -> Result<()> {
        let schema = Schema::new(vec![Field::new("d", DataType::Float64, true)]);
        let negative_nan = f64::from_bits(f64::NAN.to_bits() | (1 << 63));
        let input = Float64Array::from(vec![Some(-0.0), Some(negative_nan), Some(1.5), None]);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(input)])?;
        let expr = NormalizeNanAndZero::try_new(col("d", &schema)?, &schema)?;
        let out = expr.evaluate(&batch)?.into_array(4)?;
        let out = out.as_primitive::<Float64Type>();
        assert_eq!(out.value(0).to_bits(), 0.0_f64.to_bits());
        assert_eq!(out.value(1).to_bits(), f64::NAN.to_bits());
        assert_eq!(out.value(2), 1.5);
        assert!(out.is_null(3));
        Ok(())
    }
}
