//! Which shuffle partition each row goes to, exactly as Spark decides it.
//!
//! Spark may shuffle one side of a join, or another stage of the same query, itself; rows
//! with equal keys only meet if both shuffles route them alike, so these are Spark's
//! partitioners rather than DataFusion's (whose hash partitioning uses a different hash).

use std::fmt::{self, Display, Formatter};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{CastOptions, SortOptions, cast_with_options, take_arrays};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{RowConverter, Rows, SortField};
use ballista_spark_proto as pb;
use datafusion::common::{Result, ScalarValue, exec_err, plan_datafusion_err, plan_err};
use datafusion::physical_expr::PhysicalExpr;

use crate::expressions::kernel_expr::ArrayKernel;
use crate::expressions::normalize::{NormalizeNanAndZero, normalize_if_float};
use crate::expressions::{create_physical_expr, required};
use crate::kernels::murmur3::{pmod, spark_hash};
use crate::types::literal_value;

/// A partitioner for one shuffle, with its expressions bound to the input schema.
#[derive(Debug)]
pub struct ShufflePartitioner {
    num_partitions: usize,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Spark's `HashPartitioning`: `pmod(murmur3(exprs, 42), n)`.
    Hash(Vec<Arc<dyn PhysicalExpr>>),
    Range(RangeBounds),
    Single,
    /// Spark's `RoundRobinPartitioning`: the next row's partition, advancing by one per row
    /// across the task's batches.
    RoundRobin(AtomicUsize),
}

/// Spark's `RangePartitioner` over bounds sampled by Spark.
///
/// Keys and bounds are encoded with Arrow's row format under the sort options of the
/// ordering, so that comparing the encoded bytes is comparing in Spark's order; a row's
/// partition is then a binary search among the (ascending) bounds.
#[derive(Debug)]
struct RangeBounds {
    /// Sort keys; floats are normalized (NaN canonical and largest, -0.0 as 0.0) the way
    /// Spark orders them.
    keys: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
    bounds: Rows,
}

impl ShufflePartitioner {
    /// Binds `partitioning` to `input_schema`.
    pub fn try_new(partitioning: &pb::Partitioning, input_schema: &Schema) -> Result<Self> {
        use pb::partitioning::Kind as PbKind;
        let num_partitions = partitioning.num_partitions as usize;
        if num_partitions == 0 || num_partitions > i32::MAX as usize {
            return plan_err!("shuffle into {num_partitions} partitions");
        }
        let kind = match required(&partitioning.kind, "partitioning kind")? {
            PbKind::Hash(hash) => Kind::Hash(
                hash.exprs
                    .iter()
                    .map(|e| create_physical_expr(e, input_schema))
                    .collect::<Result<_>>()?,
            ),
            PbKind::Range(range) => {
                let bounds = RangeBounds::try_new(range, input_schema)?;
                if bounds.bounds.num_rows() >= num_partitions {
                    return plan_err!(
                        "{} range bounds for {num_partitions} partitions",
                        bounds.bounds.num_rows()
                    );
                }
                Kind::Range(bounds)
            }
            PbKind::Single(_) => Kind::Single,
            PbKind::RoundRobin(rr) => {
                Kind::RoundRobin(AtomicUsize::new(rr.start as usize % num_partitions))
            }
        };
        Ok(Self {
            num_partitions,
            kind,
        })
    }

    pub fn num_partitions(&self) -> usize {
        self.num_partitions
    }

    /// Whether every row goes to partition 0 (no per-row work needed).
    pub fn is_single(&self) -> bool {
        matches!(self.kind, Kind::Single) || self.num_partitions == 1
    }

    /// The partition of every row of `batch`, each below [`Self::num_partitions`].
    pub fn partition_ids(&self, batch: &RecordBatch) -> Result<Vec<u32>> {
        let rows = batch.num_rows();
        if self.is_single() {
            return Ok(vec![0; rows]);
        }
        match &self.kind {
            Kind::Single => Ok(vec![0; rows]),
            Kind::Hash(exprs) => {
                let columns = evaluate(exprs, batch)?;
                let n = self.num_partitions as i32;
                Ok(spark_hash(&columns, rows)?
                    .into_iter()
                    .map(|h| pmod(h, n) as u32)
                    .collect())
            }
            Kind::Range(range) => range.partition_ids(batch),
            Kind::RoundRobin(next) => {
                let n = self.num_partitions;
                let start = next.fetch_add(rows, Ordering::Relaxed) % n;
                Ok((0..rows).map(|i| ((start + i) % n) as u32).collect())
            }
        }
    }

    /// The rows of `batch` by partition: `(partition, rows)` for every partition with rows,
    /// in ascending partition order, rows keeping their order. One `take` sorts the rows by
    /// partition (a counting sort of the row indices); the parts are zero-copy slices of it.
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<(usize, RecordBatch)>> {
        if batch.num_rows() == 0 {
            return Ok(vec![]);
        }
        if self.is_single() {
            return Ok(vec![(0, batch.clone())]);
        }
        let n = self.num_partitions;
        let ids = self.partition_ids(batch)?;
        let mut counts = vec![0usize; n];
        for &id in &ids {
            counts[check_partition(id, n)?] += 1;
        }
        let mut offsets = Vec::with_capacity(n);
        let mut next = 0;
        for &c in &counts {
            offsets.push(next);
            next += c;
        }
        let mut indices = vec![0u32; ids.len()];
        let mut cursor = offsets.clone();
        for (row, &id) in ids.iter().enumerate() {
            let p = id as usize;
            indices[cursor[p]] = row as u32;
            cursor[p] += 1;
        }
        let sorted = take_rows(batch, &UInt32Array::from(indices))?;
        Ok((0..n)
            .filter(|&p| counts[p] > 0)
            .map(|p| (p, sorted.slice(offsets[p], counts[p])))
            .collect())
    }

    /// The expressions the partitioner evaluates, for plan traversals.
    pub fn expressions(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        match &self.kind {
            Kind::Hash(exprs) => exprs.iter().collect(),
            Kind::Range(range) => range.keys.iter().collect(),
            Kind::Single | Kind::RoundRobin(_) => vec![],
        }
    }
}

impl Display for ShufflePartitioner {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Hash(exprs) => {
                let exprs: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                write!(f, "hash([{}], {})", exprs.join(", "), self.num_partitions)
            }
            Kind::Range(range) => write!(
                f,
                "range({} keys, {} bounds, {})",
                range.keys.len(),
                range.bounds.num_rows(),
                self.num_partitions
            ),
            Kind::Single => write!(f, "single"),
            Kind::RoundRobin(_) => write!(f, "round_robin({})", self.num_partitions),
        }
    }
}

/// The rows `indices` of `batch`, in that order; also of a batch without columns (a shuffle
/// of row counts only, e.g. under `count(*)`), which `take_record_batch` refuses.
fn take_rows(batch: &RecordBatch, indices: &UInt32Array) -> Result<RecordBatch> {
    let columns = take_arrays(batch.columns(), indices, None)?;
    let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &options,
    )?)
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

impl RangeBounds {
    fn try_new(range: &pb::RangePartitioning, input_schema: &Schema) -> Result<Self> {
        if range.order.is_empty() {
            return plan_err!("range partitioning without sort keys");
        }
        let mut keys = Vec::with_capacity(range.order.len());
        let mut fields = Vec::with_capacity(range.order.len());
        let mut bound_columns = Vec::with_capacity(range.order.len());
        for (k, order) in range.order.iter().enumerate() {
            let key = normalize_if_float(
                create_physical_expr(required(&order.expr, "range key")?, input_schema)?,
                input_schema,
            )?;
            let data_type = key.data_type(input_schema)?;
            let values = range
                .bounds
                .iter()
                .map(|b| {
                    let literal = b.values.get(k).ok_or_else(|| {
                        plan_datafusion_err!(
                            "range bound of {} values for {} keys",
                            b.values.len(),
                            range.order.len()
                        )
                    })?;
                    literal_value(literal)
                })
                .collect::<Result<Vec<_>>>()?;
            let column = bound_column(values, &data_type)?;
            fields.push(SortField::new_with_options(
                data_type,
                SortOptions {
                    descending: !order.ascending,
                    nulls_first: order.nulls_first,
                },
            ));
            keys.push(key);
            bound_columns.push(column);
        }
        if let Some(b) = range.bounds.iter().find(|b| b.values.len() != keys.len()) {
            return plan_err!(
                "range bound of {} values for {} keys",
                b.values.len(),
                keys.len()
            );
        }
        let converter = RowConverter::new(fields)?;
        let bounds = converter.convert_columns(&bound_columns)?;
        for i in 1..bounds.num_rows() {
            if bounds.row(i - 1) >= bounds.row(i) {
                return plan_err!("range bounds are not strictly ascending at bound {i}");
            }
        }
        Ok(Self {
            keys,
            converter,
            bounds,
        })
    }

    /// Spark's `RangePartitioner.getPartition` (ascending): the number of bounds that sort
    /// strictly before the row's key.
    fn partition_ids(&self, batch: &RecordBatch) -> Result<Vec<u32>> {
        let rows = self
            .converter
            .convert_columns(&evaluate(&self.keys, batch)?)?;
        let bounds = self.bounds.num_rows();
        Ok(rows
            .iter()
            .map(|row| {
                let (mut lo, mut hi) = (0, bounds);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if self.bounds.row(mid) < row {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo as u32
            })
            .collect())
    }
}

/// The bounds of one key as an array of the key's type, floats normalized like the keys.
fn bound_column(values: Vec<ScalarValue>, data_type: &DataType) -> Result<ArrayRef> {
    let column = if values.is_empty() {
        arrow::array::new_empty_array(data_type)
    } else {
        ScalarValue::iter_to_array(values)?
    };
    let column = if column.data_type() == data_type {
        column
    } else if column.data_type() == &DataType::Null {
        arrow::array::new_null_array(data_type, column.len())
    } else {
        // Only layout differences (e.g. a string key computed as a string view) are expected;
        // a real type mismatch is a plan error from the cast.
        cast_with_options(&column, data_type, &CastOptions::default()).map_err(|e| {
            plan_datafusion_err!(
                "range bounds of type {} for a key of type {data_type}: {e}",
                column.data_type()
            )
        })?
    };
    match data_type {
        DataType::Float32 | DataType::Float64 => NormalizeNanAndZero.apply(&column),
        _ => Ok(column),
    }
}

/// Checks a partition id computed elsewhere (defensive: ids index per-partition buffers).
pub(crate) fn check_partition(id: u32, num_partitions: usize) -> Result<usize> {
    let id = id as usize;
    if id >= num_partitions {
        return exec_err!("row routed to partition {id} of {num_partitions}");
    }
    Ok(id)
}
