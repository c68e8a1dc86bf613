//! Batches that come from outside the native plan (from the JVM: Spark's shuffle output,
//! or rows of a Spark operator converted to Arrow), as a leaf of the DataFusion plan.

use std::fmt::{self, Debug, Formatter};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, exec_err, internal_err};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

/// A producer of input batches. `next_batch` blocks until a batch is available and
/// returns `None` at the end.
pub trait BatchSource: Send + Sync {
    fn next_batch(&self) -> Result<Option<RecordBatch>>;
}

/// A leaf that streams the batches of one [`BatchSource`]; it can be executed once.
pub struct InputExec {
    index: usize,
    source: Mutex<Option<Arc<dyn BatchSource>>>,
    properties: Arc<PlanProperties>,
}

impl InputExec {
    pub fn new(index: usize, schema: SchemaRef, source: Arc<dyn BatchSource>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            index,
            source: Mutex::new(Some(source)),
            properties: Arc::new(properties),
        }
    }
}

impl Debug for InputExec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "InputExec({})", self.index)
    }
}

impl DisplayAs for InputExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "InputExec: index={}", self.index)
    }
}

impl ExecutionPlan for InputExec {
    fn name(&self) -> &str {
        "InputExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("InputExec has no children")
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("InputExec has one partition, not {partition}");
        }
        let source = match self.source.lock() {
            Ok(mut guard) => guard.take(),
            Err(_) => return internal_err!("input {} poisoned", self.index),
        };
        let Some(source) = source else {
            return exec_err!("input {} was already consumed", self.index);
        };
        let schema = self.schema();
        let expected = Arc::clone(&schema);
        let stream = futures::stream::unfold(Some(source), move |state| {
            let expected = Arc::clone(&expected);
            async move {
                let source = state?;
                match source.next_batch() {
                    Ok(Some(batch)) => {
                        let batch = conform(batch, &expected);
                        Some((batch, Some(source)))
                    }
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Checks an incoming batch against the declared schema (types must match; names may not)
/// and relabels it with the declared schema.
fn conform(batch: RecordBatch, expected: &SchemaRef) -> Result<RecordBatch> {
    let actual = batch.schema();
    let types_match = actual.fields().len() == expected.fields().len()
        && actual
            .fields()
            .iter()
            .zip(expected.fields())
            .all(|(a, e)| a.data_type() == e.data_type());
    if !types_match {
        return exec_err!("input batch schema {actual} does not match the plan's {expected}");
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(expected),
        batch.columns().to_vec(),
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}
