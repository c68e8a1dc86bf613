//! The map side of a native shuffle under Ballista's shuffle manager: writes the task's whole
//! map output to one data file in Spark's sort-shuffle layout.
//!
//! The file holds the reduce partitions one after the other; each partition with rows is one
//! complete Arrow IPC stream (schema, record batches, end-of-stream marker), a partition without
//! rows takes no bytes. Spark's index file (the partitions' offsets) is written by the JVM from
//! the lengths this plan outputs, with Spark's own resolver, so Spark commits, locates and
//! deletes these files like its own, and the map status carries the real sizes adaptive
//! execution plans with.
//!
//! Rows are buffered per partition until `batch_size` are waiting, then encoded (and
//! compressed) into the partition's IPC bytes. Both are reserved from the task's memory pool;
//! when a reservation is refused, every partition's bytes so far go to a spill file and the
//! final file is assembled from the spills and what is left in memory, partition by partition.
//! Each partition keeps one IPC stream encoder throughout, so the pieces of a partition from
//! different spills concatenate into one valid stream.

use std::fmt::{self, Debug, Formatter};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::{IpcWriteOptions, StreamEncoder};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, internal_err};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::spill_file::SpillFile;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream, apply_expression_roots,
};
use futures::StreamExt;

use super::partitioning::ShufflePartitioner;
use super::wire;

/// Writes its input to a map output file; outputs `(partition, length, rows)` per partition.
pub struct ShuffleFileWriterExec {
    input: Arc<dyn ExecutionPlan>,
    partitioner: Arc<ShufflePartitioner>,
    options: IpcWriteOptions,
    batch_size: usize,
    path: PathBuf,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

/// The output schema: one row per reduce partition, in partition order.
pub fn map_output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("length", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
    ]))
}

impl ShuffleFileWriterExec {
    /// A writer of `input` split by `partitioner` into the data file `path` (created or
    /// replaced), with IPC write `options` (compression).
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        partitioner: ShufflePartitioner,
        options: IpcWriteOptions,
        batch_size: usize,
        path: PathBuf,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(map_output_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            partitioner: Arc::new(partitioner),
            options,
            batch_size: batch_size.max(1),
            path,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl Debug for ShuffleFileWriterExec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "ShuffleFileWriterExec({})", self.partitioner)
    }
}

impl DisplayAs for ShuffleFileWriterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ShuffleFileWriterExec: partitioning={}, file={}",
            self.partitioner,
            self.path.display()
        )
    }
}

impl ExecutionPlan for ShuffleFileWriterExec {
    fn name(&self) -> &str {
        "ShuffleFileWriterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(self.partitioner.expressions(), f)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("ShuffleFileWriterExec has one child");
        }
        Ok(Arc::new(Self {
            input: children.swap_remove(0),
            partitioner: Arc::clone(&self.partitioner),
            options: self.options.clone(),
            batch_size: self.batch_size,
            path: self.path.clone(),
            properties: Arc::clone(&self.properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("ShuffleFileWriterExec has one partition, not {partition}");
        }
        let input = self.input.execute(0, Arc::clone(&context))?;
        let reservation = MemoryConsumer::new("ShuffleFileWriter")
            .with_can_spill(true)
            .register(context.memory_pool());
        let mut state = MapOutput {
            wire_schema: wire::wire_schema(&input.schema()),
            schema: input.schema(),
            partitions: (0..self.partitioner.num_partitions())
                .map(|_| PartitionOutput::default())
                .collect(),
            options: self.options.clone(),
            batch_size: self.batch_size,
            reservation,
            spills: vec![],
            context,
            spill_count: MetricBuilder::new(&self.metrics).spill_count(0),
            spilled_bytes: MetricBuilder::new(&self.metrics).spilled_bytes(0),
        };
        let baseline = BaselineMetrics::new(&self.metrics, 0);
        let partitioner = Arc::clone(&self.partitioner);
        let path = self.path.clone();
        let write = async move {
            let result = async {
                let mut input = input;
                while let Some(batch) = input.next().await {
                    let batch = batch?;
                    let _timer = baseline.elapsed_compute().timer();
                    state.append(partitioner.split(&batch)?)?;
                }
                let _timer = baseline.elapsed_compute().timer();
                state.finish(&path)
            }
            .await;
            if result.is_err() {
                // A failed task leaves no partial output behind (Spark only sees committed files).
                let _ = std::fs::remove_file(&path);
            }
            let batch = result?;
            baseline.record_output(batch.num_rows());
            Ok(batch)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            map_output_schema(),
            futures::stream::once(write),
        )))
    }
}

/// One reduce partition's output so far.
#[derive(Default)]
struct PartitionOutput {
    /// Rows not yet encoded, with the memory reserved for each.
    pending: Vec<(RecordBatch, usize)>,
    pending_rows: usize,
    /// Encodes the partition's IPC stream; created with its first rows.
    encoder: Option<StreamEncoder>,
    /// Encoded stream bytes not yet spilled.
    encoded: Vec<u8>,
    rows: i64,
}

/// A spill file: every partition's encoded bytes at the time, as `(offset, length)` ranges.
struct Spill {
    file: Arc<dyn SpillFile>,
    ranges: Vec<(u64, u64)>,
}

struct MapOutput {
    schema: SchemaRef,
    /// The types the blocks carry ([`wire`]).
    wire_schema: SchemaRef,
    partitions: Vec<PartitionOutput>,
    options: IpcWriteOptions,
    batch_size: usize,
    reservation: MemoryReservation,
    spills: Vec<Spill>,
    context: Arc<TaskContext>,
    spill_count: Count,
    spilled_bytes: Count,
}

impl MapOutput {
    /// Buffers one input batch's rows, split by partition.
    fn append(&mut self, parts: Vec<(usize, RecordBatch)>) -> Result<()> {
        // The parts are slices of one sorted batch, each reporting that batch's buffers as its
        // size: each accounts for its rows' share of them.
        let total_rows: usize = parts.iter().map(|(_, rows)| rows.num_rows()).sum();
        let total_size = parts
            .first()
            .map(|(_, rows)| rows.get_array_memory_size())
            .unwrap_or(0);
        let mut full = vec![];
        for (p, rows) in parts {
            let size = total_size * rows.num_rows() / total_rows.max(1);
            self.reserve(size)?;
            let output = &mut self.partitions[p];
            output.pending_rows += rows.num_rows();
            output.rows += rows.num_rows() as i64;
            output.pending.push((rows, size));
            if output.pending_rows >= self.batch_size {
                full.push(p);
            }
        }
        for p in full {
            self.encode(p)?;
        }
        Ok(())
    }

    /// Reserves `bytes`, spilling everything buffered if the pool refuses; past that, the
    /// bytes are taken anyway (they are what one batch needs to make progress).
    fn reserve(&mut self, bytes: usize) -> Result<()> {
        if self.reservation.try_grow(bytes).is_ok() {
            return Ok(());
        }
        self.spill()?;
        if self.reservation.try_grow(bytes).is_err() {
            self.reservation.grow(bytes);
        }
        Ok(())
    }

    /// Encodes partition `p`'s pending rows into its IPC stream bytes.
    fn encode(&mut self, p: usize) -> Result<()> {
        let output = &mut self.partitions[p];
        if output.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut output.pending);
        output.pending_rows = 0;
        let reserved: usize = pending.iter().map(|(_, size)| size).sum();
        let batches: Vec<RecordBatch> = pending.into_iter().map(|(b, _)| b).collect();
        let batch = wire::to_wire(concat_batches(&self.schema, &batches)?, &self.wire_schema)?;
        drop(batches);
        let encoder = match &mut output.encoder {
            Some(encoder) => encoder,
            None => output.encoder.insert(StreamEncoder::try_new_with_options(
                &self.wire_schema,
                self.options.clone(),
            )?),
        };
        let before = output.encoded.len();
        for buffer in encoder.encode(&batch)? {
            output.encoded.extend_from_slice(buffer.as_slice());
        }
        let added = output.encoded.len() - before;
        self.reservation
            .shrink(reserved.min(self.reservation.size()));
        // Encoded bytes are much smaller than the rows; they must be held until the end anyway.
        self.reservation.grow(added);
        Ok(())
    }

    /// Writes every partition's bytes so far to a new spill file and frees their memory.
    fn spill(&mut self) -> Result<()> {
        for p in 0..self.partitions.len() {
            self.encode(p)?;
        }
        let total: usize = self.partitions.iter().map(|o| o.encoded.len()).sum();
        if total == 0 {
            return Ok(());
        }
        let file = self
            .context
            .runtime_env()
            .disk_manager
            .create_tmp_file("shuffle map output spill")?;
        let mut writer =
            BufWriter::new(File::create(spill_path(file.as_ref())?).map_err(io_error)?);
        let mut ranges = Vec::with_capacity(self.partitions.len());
        let mut offset = 0u64;
        for output in &mut self.partitions {
            writer.write_all(&output.encoded).map_err(io_error)?;
            let length = output.encoded.len() as u64;
            ranges.push((offset, length));
            offset += length;
            output.encoded = Vec::new();
        }
        writer.flush().map_err(io_error)?;
        self.reservation.free();
        self.spill_count.add(1);
        self.spilled_bytes.add(total);
        self.spills.push(Spill { file, ranges });
        Ok(())
    }

    /// Writes the data file from the spills and memory; returns the partitions' lengths.
    fn finish(&mut self, path: &Path) -> Result<RecordBatch> {
        for p in 0..self.partitions.len() {
            self.encode(p)?;
        }
        let mut out = BufWriter::new(File::create(path).map_err(io_error)?);
        let mut spill_files = self
            .spills
            .iter()
            .map(|s| File::open(spill_path(s.file.as_ref())?).map_err(io_error))
            .collect::<Result<Vec<_>>>()?;
        let n = self.partitions.len();
        let mut lengths = Vec::with_capacity(n);
        for p in 0..n {
            let mut length = 0u64;
            for (spill, file) in self.spills.iter().zip(spill_files.iter_mut()) {
                let (offset, len) = spill.ranges[p];
                if len > 0 {
                    file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
                    let copied = std::io::copy(&mut file.take(len), &mut out).map_err(io_error)?;
                    if copied != len {
                        return internal_err!("spill file ended after {copied} of {len} bytes");
                    }
                    length += len;
                }
            }
            let output = &mut self.partitions[p];
            out.write_all(&output.encoded).map_err(io_error)?;
            length += output.encoded.len() as u64;
            output.encoded = Vec::new();
            if let Some(encoder) = output.encoder.take() {
                for buffer in encoder.finish()? {
                    out.write_all(buffer.as_slice()).map_err(io_error)?;
                    length += buffer.len() as u64;
                }
            }
            lengths.push(length as i64);
        }
        // Not synced to disk, as Spark's own shuffle files (`spark.shuffle.sync` is off).
        out.flush().map_err(io_error)?;
        self.reservation.free();
        self.spills.clear();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(0..n as i32)),
            Arc::new(Int64Array::from(lengths)),
            Arc::new(Int64Array::from_iter_values(
                self.partitions.iter().map(|o| o.rows),
            )),
        ];
        Ok(RecordBatch::try_new(map_output_schema(), columns)?)
    }
}

/// Spill files are local: the writer reads its ranges back with plain file I/O.
fn spill_path(file: &dyn SpillFile) -> Result<&Path> {
    file.path()
        .ok_or_else(|| DataFusionError::Internal("shuffle spill file is not local".into()))
}

fn io_error(e: std::io::Error) -> DataFusionError {
    DataFusionError::IoError(e)
}
