//! The map side of a native shuffle: splits the task's rows by partition and encodes them as
//! Arrow IPC streams.
//!
//! The plan's output is a three-column table, `(partition, data, rows)`, one row per block: the JVM
//! side only has to hand each block's bytes to Spark's shuffle machinery for that partition
//! (and the reduce side decodes them with [`super::reader::IpcReaderExec`]). Each block is a
//! complete IPC stream (schema message, then record batches), so blocks can be concatenated,
//! reordered or fetched separately without any framing of their own.
//!
//! Rows are buffered per partition until at least `batch_size` rows are waiting, so that
//! blocks — and the batches decoded from them — are not tiny when there are many partitions;
//! what is left is flushed at the end of the input. Memory use is therefore about
//! `num_partitions × batch_size` rows at most.

use std::fmt::{self, Debug, Formatter};
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, Int32Array, Int64Array, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::CompressionType;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use ballista_spark_proto as pb;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err, plan_err};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream, apply_expression_roots,
};
use futures::StreamExt;

use super::partitioning::ShufflePartitioner;
use super::wire;

/// Writes its input as `(partition INT32, data BINARY, rows INT64)` blocks of Arrow IPC streams.
pub struct ShuffleWriterExec {
    input: Arc<dyn ExecutionPlan>,
    partitioner: Arc<ShufflePartitioner>,
    compression: Option<CompressionType>,
    options: IpcWriteOptions,
    batch_size: usize,
    properties: Arc<PlanProperties>,
}

/// The output schema: one row per block.
pub fn shuffle_output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("data", DataType::Binary, false),
        Field::new("rows", DataType::Int64, false),
    ]))
}

/// The IPC buffer compression for a plan's codec.
pub fn compression(codec: i32) -> Result<Option<CompressionType>> {
    match pb::CompressionCodec::try_from(codec) {
        Ok(pb::CompressionCodec::None) => Ok(None),
        Ok(pb::CompressionCodec::Lz4Frame) => Ok(Some(CompressionType::LZ4_FRAME)),
        Ok(pb::CompressionCodec::Zstd) => Ok(Some(CompressionType::ZSTD)),
        Err(_) => plan_err!("unknown compression codec {codec}"),
    }
}

impl ShuffleWriterExec {
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        partitioner: ShufflePartitioner,
        compression: Option<CompressionType>,
        batch_size: usize,
    ) -> Result<Self> {
        let options = IpcWriteOptions::default().try_with_compression(compression)?;
        let properties = PlanProperties::new(
            EquivalenceProperties::new(shuffle_output_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            input,
            partitioner: Arc::new(partitioner),
            compression,
            options,
            batch_size: batch_size.max(1),
            properties: Arc::new(properties),
        })
    }
}

impl Debug for ShuffleWriterExec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "ShuffleWriterExec({})", self.partitioner)
    }
}

impl DisplayAs for ShuffleWriterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ShuffleWriterExec: partitioning={}, compression={:?}",
            self.partitioner, self.compression
        )
    }
}

impl ExecutionPlan for ShuffleWriterExec {
    fn name(&self) -> &str {
        "ShuffleWriterExec"
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
            return internal_err!("ShuffleWriterExec has one child");
        }
        Ok(Arc::new(Self {
            input: children.swap_remove(0),
            partitioner: Arc::clone(&self.partitioner),
            compression: self.compression,
            options: self.options.clone(),
            batch_size: self.batch_size,
            properties: Arc::clone(&self.properties),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("ShuffleWriterExec has one partition, not {partition}");
        }
        let input = self.input.execute(0, context)?;
        let state = WriterState {
            buffers: (0..self.partitioner.num_partitions())
                .map(|_| PartitionBuffer::default())
                .collect(),
            wire_schema: wire::wire_schema(&input.schema()),
            schema: input.schema(),
            input: Some(input),
            partitioner: Arc::clone(&self.partitioner),
            options: self.options.clone(),
            batch_size: self.batch_size,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let output = state.next_output().await;
            output.map(|o| (o, state))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            shuffle_output_schema(),
            stream,
        )))
    }
}

/// Rows of one partition waiting to be encoded.
#[derive(Default)]
struct PartitionBuffer {
    batches: Vec<RecordBatch>,
    rows: usize,
}

struct WriterState {
    /// `None` once the input is exhausted or failed.
    input: Option<SendableRecordBatchStream>,
    schema: SchemaRef,
    /// The types the blocks carry ([`wire`]).
    wire_schema: SchemaRef,
    partitioner: Arc<ShufflePartitioner>,
    options: IpcWriteOptions,
    batch_size: usize,
    buffers: Vec<PartitionBuffer>,
}

/// An encoded block: the partition, one IPC stream and its number of rows.
type Block = (i32, Vec<u8>, i64);

impl WriterState {
    /// The next output batch of blocks; `None` at the end.
    async fn next_output(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            let input = self.input.as_mut()?;
            match input.next().await {
                Some(Ok(batch)) => match self.append(&batch) {
                    Ok(blocks) if blocks.is_empty() => continue,
                    Ok(blocks) => return Some(blocks_batch(blocks)),
                    Err(e) => return Some(self.fail(e)),
                },
                Some(Err(e)) => return Some(self.fail(e)),
                None => {
                    self.input = None;
                    return match self.flush_all() {
                        Ok(blocks) if blocks.is_empty() => None,
                        Ok(blocks) => Some(blocks_batch(blocks)),
                        Err(e) => Some(Err(e)),
                    };
                }
            }
        }
    }

    fn fail(&mut self, e: datafusion::common::DataFusionError) -> Result<RecordBatch> {
        self.input = None;
        self.buffers.clear();
        Err(e)
    }

    /// Buffers the rows of `batch` by partition; returns the blocks of partitions that
    /// reached `batch_size` rows.
    fn append(&mut self, batch: &RecordBatch) -> Result<Vec<Block>> {
        if batch.num_rows() == 0 {
            return Ok(vec![]);
        }
        let mut touched = vec![];
        for (p, rows) in self.partitioner.split(batch)? {
            self.push(p, rows, &mut touched);
        }
        let mut blocks = vec![];
        for p in touched {
            if self.buffers[p].rows >= self.batch_size {
                blocks.push(self.encode(p)?);
            }
        }
        Ok(blocks)
    }

    fn push(&mut self, p: usize, rows: RecordBatch, touched: &mut Vec<usize>) {
        let buffer = &mut self.buffers[p];
        buffer.rows += rows.num_rows();
        buffer.batches.push(rows);
        touched.push(p);
    }

    /// The blocks of every partition with rows left, at the end of the input.
    fn flush_all(&mut self) -> Result<Vec<Block>> {
        let waiting: Vec<usize> = (0..self.buffers.len())
            .filter(|&p| self.buffers[p].rows > 0)
            .collect();
        waiting.into_iter().map(|p| self.encode(p)).collect()
    }

    /// Encodes the buffered rows of partition `p` as one IPC stream (one record batch).
    fn encode(&mut self, p: usize) -> Result<Block> {
        let buffer = std::mem::take(&mut self.buffers[p]);
        let rows = buffer.rows as i64;
        let batch = wire::to_wire(
            concat_batches(&self.schema, &buffer.batches)?,
            &self.wire_schema,
        )?;
        let mut writer = StreamWriter::try_new_with_options(
            Vec::new(),
            &self.wire_schema,
            self.options.clone(),
        )?;
        writer.write(&batch)?;
        writer.finish()?;
        Ok((p as i32, writer.into_inner()?, rows))
    }
}

fn blocks_batch(blocks: Vec<Block>) -> Result<RecordBatch> {
    let partitions = Int32Array::from_iter_values(blocks.iter().map(|(p, _, _)| *p));
    let rows = Int64Array::from_iter_values(blocks.iter().map(|(_, _, r)| *r));
    let bytes: usize = blocks.iter().map(|(_, b, _)| b.len()).sum();
    let mut data = BinaryBuilder::with_capacity(blocks.len(), bytes);
    for (_, block, _) in &blocks {
        data.append_value(block);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(partitions),
        Arc::new(data.finish()),
        Arc::new(rows),
    ];
    Ok(RecordBatch::try_new(shuffle_output_schema(), columns)?)
}
