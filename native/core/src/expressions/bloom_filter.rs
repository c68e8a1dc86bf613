//! `might_contain(bloom filter, value)`: Spark's runtime filter test
//! (`BloomFilterMightContain`), over a filter Spark serialized.

use std::fmt::{self, Display, Formatter};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{DataType, Int64Type, Schema};
use ballista_spark_proto as pb;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;

use super::kernel_expr::{ArrayKernel, KernelExpr};
use super::{create_physical_expr, required};
use crate::kernels::bloom_filter::SparkBloomFilter;

/// The test against one filter, read once when the plan is built. A null filter (what Spark's
/// `bloom_filter_agg` gives over no rows) makes every result null, as in Spark.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MightContain {
    filter: Option<Arc<SparkBloomFilter>>,
    pass_rate: PassRate,
}

/// How many rows of the task passed the test so far. A runtime filter only saves work when
/// it removes most rows; one that lets more than half pass (a filter of most keys, or one
/// saturated with false positives) costs more in hashing and probing, mostly cache misses,
/// than the rows it removes save downstream. So once [`PassRate::SAMPLE_ROWS`] rows have
/// been tested and more than half passed, every later row passes untested: a Bloom filter
/// only ever removes rows that cannot join, so passing more rows never changes a result.
#[derive(Debug, Clone, Default)]
struct PassRate(Arc<PassCounts>);

#[derive(Debug, Default)]
struct PassCounts {
    tested: AtomicU64,
    passed: AtomicU64,
    off: AtomicBool,
}

impl PassRate {
    const SAMPLE_ROWS: u64 = 65_536;

    fn testing(&self) -> bool {
        !self.0.off.load(Ordering::Relaxed)
    }

    fn record(&self, tested: u64, passed: u64) {
        let tested = self.0.tested.fetch_add(tested, Ordering::Relaxed) + tested;
        let passed = self.0.passed.fetch_add(passed, Ordering::Relaxed) + passed;
        if tested >= Self::SAMPLE_ROWS && passed * 2 > tested {
            self.0.off.store(true, Ordering::Relaxed);
        }
    }
}

// Counts are not part of what the test is.
impl PartialEq for PassRate {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PassRate {}

impl Hash for PassRate {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

impl Display for MightContain {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.filter {
            Some(filter) => write!(
                f,
                "might_contain[{} bits, {} hashes]",
                filter.bit_size(),
                filter.num_hash_functions()
            ),
            None => write!(f, "might_contain[null]"),
        }
    }
}

impl ArrayKernel for MightContain {
    fn return_type(&self, input: &DataType) -> Result<DataType> {
        match input {
            DataType::Int64 => Ok(DataType::Boolean),
            t => exec_err!("might_contain of {t} (Spark tests longs)"),
        }
    }

    fn introduces_nulls(&self) -> bool {
        self.filter.is_none()
    }

    fn apply(&self, input: &ArrayRef) -> Result<ArrayRef> {
        let Some(filter) = &self.filter else {
            return Ok(Arc::new(BooleanArray::new_null(input.len())));
        };
        let values = input.as_primitive::<Int64Type>();
        let found = if self.pass_rate.testing() {
            let found = values
                .values()
                .iter()
                .map(|&v| filter.might_contain_long(v))
                .collect::<BooleanBuffer>();
            self.pass_rate
                .record(found.len() as u64, found.count_set_bits() as u64);
            found
        } else {
            BooleanBuffer::new_set(values.len())
        };
        Ok(Arc::new(BooleanArray::new(found, values.nulls().cloned())))
    }
}

/// The expression for `m`, whose filter must be a binary literal (Spark evaluated the
/// subquery that built it before the plan).
pub fn might_contain(
    m: &pb::BloomFilterMightContain,
    schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    let filter_expr = create_physical_expr(required(&m.bloom_filter, "Bloom filter")?, schema)?;
    let filter = match filter_expr.downcast_ref::<Literal>().map(|l| l.value()) {
        Some(ScalarValue::Binary(Some(bytes))) => {
            Some(Arc::new(SparkBloomFilter::from_spark_bytes(bytes)?))
        }
        Some(ScalarValue::Binary(None) | ScalarValue::Null) => None,
        _ => return plan_err!("might_contain takes a binary literal as its Bloom filter"),
    };
    let value = create_physical_expr(required(&m.value, "might_contain value")?, schema)?;
    KernelExpr::try_new(
        value,
        MightContain {
            filter,
            pass_rate: PassRate::default(),
        },
        schema,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::col;

    /// `might_contain(filter, h)` over a column `h` of longs.
    fn might_contain_expr(filter: Option<SparkBloomFilter>) -> Result<Arc<dyn PhysicalExpr>> {
        let schema = Schema::new(vec![Field::new("h", DataType::Int64, true)]);
        let kernel = MightContain {
            filter: filter.map(Arc::new),
            pass_rate: PassRate::default(),
        };
        KernelExpr::try_new(col("h", &schema)?, kernel, &schema)
    }

    fn test(expr: &Arc<dyn PhysicalExpr>, values: Int64Array) -> Result<BooleanArray> {
        let schema = Schema::new(vec![Field::new("h", DataType::Int64, true)]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(values)])?;
        let result = expr.evaluate(&batch)?.into_array(batch.num_rows())?;
        Ok(result.as_boolean().clone())
    }

    #[test]
    fn tests_each_value_and_keeps_nulls() -> Result<()> {
        let mut filter = SparkBloomFilter::with_shape(4, 64)?;
        filter.put_long(7);
        filter.put_long(-9);
        let result = test(
            &might_contain_expr(Some(filter))?,
            Int64Array::from(vec![Some(7), None, Some(-9), Some(8)]),
        )?;
        let expected = BooleanArray::from(vec![Some(true), None, Some(true), Some(false)]);
        assert_eq!(result, expected);
        Ok(())
    }

    #[test]
    fn a_filter_most_rows_pass_stops_testing() -> Result<()> {
        let mut filter = SparkBloomFilter::with_shape(4, 1 << 16)?;
        (0..70_000).for_each(|v| filter.put_long(v));
        let expr = might_contain_expr(Some(filter))?;
        let passed = |values: Vec<i64>| -> Result<usize> {
            Ok(test(&expr, Int64Array::from(values))?.true_count())
        };
        // Rows the filter lacks are removed while it is tested...
        assert_eq!(passed((1_000_000..1_000_100).collect())?, 0);
        // ...until more than half of enough rows passed: then all pass.
        assert_eq!(passed((0..70_000).collect())?, 70_000);
        assert_eq!(passed((1_000_000..1_000_100).collect())?, 100);
        Ok(())
    }

    #[test]
    fn a_null_filter_gives_nulls() -> Result<()> {
        let result = test(&might_contain_expr(None)?, Int64Array::from(vec![1, 2]))?;
        assert_eq!(result.null_count(), 2);
        Ok(())
    }
}
