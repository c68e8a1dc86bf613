//! Spark's `UnscaledValue` and `MakeDecimal`: the conversions between a narrow decimal and its
//! unscaled long that Spark's optimizer (`DecimalAggregates`) wraps around sums and averages
//! of decimals of precision up to 18.

use std::fmt::{self, Display, Formatter};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Int64Array};
use arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err, internal_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

/// Decimal (precision <= 18) to its unscaled INT64 value, or INT64 unscaled value to decimal.
#[derive(Debug, Clone)]
pub struct DecimalScaling {
    child: Arc<dyn PhysicalExpr>,
    /// `Some` for MakeDecimal: the target precision and scale, and whether overflow is null.
    make: Option<(u8, i8, bool)>,
}

impl DecimalScaling {
    /// Spark's `UnscaledValue(child)`.
    pub fn unscaled_value(child: Arc<dyn PhysicalExpr>, input_schema: &Schema) -> Result<Self> {
        match child.data_type(input_schema)? {
            DataType::Decimal128(p, _) if p <= 18 => Ok(Self { child, make: None }),
            t => exec_err!("UnscaledValue of {t}"),
        }
    }

    /// Spark's `MakeDecimal(child, precision, scale, nullOnOverflow)`.
    pub fn make_decimal(
        child: Arc<dyn PhysicalExpr>,
        to: DataType,
        null_on_overflow: bool,
        input_schema: &Schema,
    ) -> Result<Self> {
        match (child.data_type(input_schema)?, to) {
            (DataType::Int64, DataType::Decimal128(p, s)) => Ok(Self {
                child,
                make: Some((p, s, null_on_overflow)),
            }),
            (from, to) => exec_err!("MakeDecimal from {from} to {to}"),
        }
    }
}

impl PartialEq for DecimalScaling {
    fn eq(&self, other: &Self) -> bool {
        self.child.as_ref() == other.child.as_ref() && self.make == other.make
    }
}

impl Eq for DecimalScaling {}

impl Hash for DecimalScaling {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.child.hash(state);
        self.make.hash(state);
    }
}

impl Display for DecimalScaling {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.make {
            None => write!(f, "UnscaledValue({})", self.child),
            Some((p, s, _)) => write!(f, "MakeDecimal({}, {p}, {s})", self.child),
        }
    }
}

impl PhysicalExpr for DecimalScaling {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        let (data_type, nullable) = match self.make {
            None => (DataType::Int64, self.child.nullable(input_schema)?),
            Some((p, s, _)) => (DataType::Decimal128(p, s), true),
        };
        Ok(Arc::new(Field::new(self.to_string(), data_type, nullable)))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let array = self.child.evaluate(batch)?.into_array(batch.num_rows())?;
        let out: ArrayRef = match self.make {
            // Precision <= 18: every unscaled value fits an i64.
            None => Arc::new(Int64Array::from_iter(
                array
                    .as_primitive::<Decimal128Type>()
                    .iter()
                    .map(|v| v.map(|v| v as i64)),
            )),
            Some((p, s, null_on_overflow)) => {
                let limit = 10_i128.pow(u32::from(p));
                let mut values = Vec::with_capacity(array.len());
                for v in array.as_primitive::<Int64Type>().iter() {
                    values.push(match v.map(i128::from) {
                        Some(v) if v.abs() < limit => Some(v),
                        Some(v) if !null_on_overflow => {
                            return exec_err!(
                                "[NUMERIC_VALUE_OUT_OF_RANGE] {v} (scale {s}) does not fit \
                                 Decimal({p}, {s})"
                            );
                        }
                        _ => None,
                    });
                }
                Arc::new(Decimal128Array::from(values).with_precision_and_scale(p, s)?)
            }
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
            .or_else(|_| internal_err!("decimal scaling takes one child"))?;
        Ok(Arc::new(Self {
            child,
            make: self.make,
        }))
    }

    fn fmt_sql(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
