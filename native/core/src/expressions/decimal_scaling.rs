//! Spark's `UnscaledValue` and `MakeDecimal`: the conversions between a narrow decimal and its
//! unscaled long that Spark's optimizer (`DecimalAggregates`) wraps around sums and averages
//! of decimals of precision up to 18.

use std::fmt::{self, Display, Formatter};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Decimal128Array, Int64Array};
use arrow::datatypes::{DataType, Decimal128Type, Int64Type, Schema};
use datafusion::common::{Result, exec_err};
use datafusion::physical_expr::PhysicalExpr;

use super::kernel_expr::{ArrayKernel, KernelExpr};

/// Spark's `UnscaledValue(child)` for a decimal of precision <= 18.
pub fn unscaled_value(
    child: Arc<dyn PhysicalExpr>,
    input_schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    KernelExpr::try_new(child, UnscaledValue, input_schema)
}

/// Spark's `MakeDecimal(child, precision, scale, nullOnOverflow)` for an INT64 `child`.
pub fn make_decimal(
    child: Arc<dyn PhysicalExpr>,
    to: DataType,
    null_on_overflow: bool,
    input_schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    let DataType::Decimal128(precision, scale) = to else {
        return exec_err!("MakeDecimal to {to}");
    };
    let kernel = MakeDecimal {
        precision,
        scale,
        null_on_overflow,
    };
    KernelExpr::try_new(child, kernel, input_schema)
}

/// The unscaled value of a narrow decimal, as INT64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnscaledValue;

impl Display for UnscaledValue {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "UnscaledValue")
    }
}

impl ArrayKernel for UnscaledValue {
    fn return_type(&self, input: &DataType) -> Result<DataType> {
        match input {
            DataType::Decimal128(p, _) if *p <= 18 => Ok(DataType::Int64),
            t => exec_err!("UnscaledValue of {t}"),
        }
    }

    fn apply(&self, array: &ArrayRef) -> Result<ArrayRef> {
        // Precision <= 18: every unscaled value fits an i64.
        Ok(Arc::new(Int64Array::from_iter(
            array
                .as_primitive::<Decimal128Type>()
                .iter()
                .map(|v| v.map(|v| v as i64)),
        )))
    }
}

/// An INT64 unscaled value as a decimal: null (or an error) when it has too many digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MakeDecimal {
    precision: u8,
    scale: i8,
    null_on_overflow: bool,
}

impl Display for MakeDecimal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "MakeDecimal[{}, {}]", self.precision, self.scale)
    }
}

impl ArrayKernel for MakeDecimal {
    fn return_type(&self, input: &DataType) -> Result<DataType> {
        match input {
            DataType::Int64 => Ok(DataType::Decimal128(self.precision, self.scale)),
            t => exec_err!("MakeDecimal from {t}"),
        }
    }

    fn introduces_nulls(&self) -> bool {
        true
    }

    fn apply(&self, array: &ArrayRef) -> Result<ArrayRef> {
        let (p, s) = (self.precision, self.scale);
        let limit = 10_i128.pow(u32::from(p));
        let mut values = Vec::with_capacity(array.len());
        for v in array.as_primitive::<Int64Type>().iter() {
            values.push(match v.map(i128::from) {
                Some(v) if v.abs() < limit => Some(v),
                Some(v) if !self.null_on_overflow => {
                    return exec_err!(
                        "[NUMERIC_VALUE_OUT_OF_RANGE] {v} (scale {s}) does not fit Decimal({p}, {s})"
                    );
                }
                _ => None,
            });
        }
        Ok(Arc::new(
            Decimal128Array::from(values).with_precision_and_scale(p, s)?,
        ))
    }
}
