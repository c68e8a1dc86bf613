//! The reduce side of a native shuffle: decodes the blocks written by
//! [`super::writer::ShuffleWriterExec`] back into record batches.
//!
//! The JVM fetches the blocks of this task's partition through Spark's shuffle machinery
//! and hands them over as batches of one BINARY column; every value is one complete Arrow
//! IPC stream. The decoded batches are relabelled with the plan's schema (all columns
//! nullable, as everywhere in the native plans) after checking their types.

use std::collections::VecDeque;
use std::fmt::{self, Debug, Formatter};
use std::sync::Arc;

use arrow::array::{Array, AsArray, GenericBinaryArray, OffsetSizeTrait, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::ipc::reader::StreamDecoder;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, exec_err, internal_err, plan_err};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::execution;

/// Decodes IPC stream blocks (its input's only column) into batches of `schema`.
pub struct IpcReaderExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl IpcReaderExec {
    /// `schema` is the schema of the decoded batches; the input must have one binary column.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, schema: SchemaRef) -> Result<Self> {
        let input_schema = input.schema();
        let fields = input_schema.fields();
        if fields.len() != 1
            || !matches!(
                fields[0].data_type(),
                DataType::Binary | DataType::LargeBinary
            )
        {
            return plan_err!("IPC reader input must be one binary column, not {input_schema}");
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            input,
            properties: Arc::new(properties),
        })
    }
}

impl Debug for IpcReaderExec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "IpcReaderExec")
    }
}

impl DisplayAs for IpcReaderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "IpcReaderExec")
    }
}

impl ExecutionPlan for IpcReaderExec {
    fn name(&self) -> &str {
        "IpcReaderExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("IpcReaderExec has one child");
        }
        Ok(Arc::new(Self::try_new(
            children.swap_remove(0),
            self.schema(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("IpcReaderExec has one partition, not {partition}");
        }
        let state = ReaderState {
            input: Some(self.input.execute(0, context)?),
            schema: self.schema(),
            blocks: VecDeque::new(),
            decoded: VecDeque::new(),
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let output = state.next_batch().await;
            output.map(|o| (o, state))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

struct ReaderState {
    /// `None` once the input is exhausted or failed.
    input: Option<SendableRecordBatchStream>,
    schema: SchemaRef,
    /// Blocks of the current input batch not decoded yet (shared slices, no copies).
    blocks: VecDeque<Buffer>,
    /// Batches of the current block not returned yet.
    decoded: VecDeque<RecordBatch>,
}

impl ReaderState {
    async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(batch) = self.decoded.pop_front() {
                return Some(Ok(batch));
            }
            if let Some(block) = self.blocks.pop_front() {
                match decode(block, &self.schema) {
                    Ok(batches) => self.decoded = batches.into(),
                    Err(e) => return Some(self.fail(e)),
                }
                continue;
            }
            let input = self.input.as_mut()?;
            match input.next().await {
                Some(Ok(batch)) => match blocks(&batch) {
                    Ok(blocks) => self.blocks = blocks,
                    Err(e) => return Some(self.fail(e)),
                },
                Some(Err(e)) => return Some(self.fail(e)),
                None => {
                    self.input = None;
                    return None;
                }
            }
        }
    }

    fn fail(&mut self, e: datafusion::common::DataFusionError) -> Result<RecordBatch> {
        self.input = None;
        self.blocks.clear();
        Err(e)
    }
}

/// The values of the binary column of `batch`, as slices of its data buffer.
fn blocks(batch: &RecordBatch) -> Result<VecDeque<Buffer>> {
    let column = batch.column(0);
    match column.data_type() {
        DataType::Binary => binary_blocks(column.as_binary::<i32>()),
        DataType::LargeBinary => binary_blocks(column.as_binary::<i64>()),
        t => exec_err!("IPC reader input of type {t}"),
    }
}

fn binary_blocks<O: OffsetSizeTrait>(array: &GenericBinaryArray<O>) -> Result<VecDeque<Buffer>> {
    if array.null_count() > 0 {
        return exec_err!("null IPC block in shuffle input");
    }
    let offsets = array.value_offsets();
    let values = array.values();
    Ok(offsets
        .windows(2)
        .map(|w| {
            let (start, end) = (w[0].as_usize(), w[1].as_usize());
            values.slice_with_length(start, end - start)
        })
        .collect())
}

/// Every batch of one IPC stream, relabelled with `schema`.
///
/// Arrow's push-based decoder is used rather than its `Read`-based reader: it slices
/// message bodies out of the block without copying, and it only ever holds bytes that are
/// really there, whereas the reader allocates whatever length a (possibly corrupt) message
/// header claims before finding out the block is shorter.
fn decode(mut block: Buffer, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let mut decoder = StreamDecoder::new();
    let mut batches = vec![];
    while let Some(batch) = decoder.decode(&mut block)? {
        batches.push(conform(batch, schema)?);
    }
    decoder.finish()?;
    Ok(batches)
}

/// `batch` with `schema`'s fields, after checking that its column types fit them.
pub(crate) fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let decoded_schema = batch.schema();
    let fields = schema.fields();
    let types_fit = decoded_schema.fields().len() == fields.len()
        && decoded_schema
            .fields()
            .iter()
            .zip(fields)
            .all(|(d, e)| execution::compatible(d.data_type(), e.data_type()));
    if !types_fit {
        return exec_err!("IPC block of schema {decoded_schema} read as {schema}");
    }
    execution::conform_output(batch, schema)
}
