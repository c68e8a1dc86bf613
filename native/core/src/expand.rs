//! Spark's `ExpandExec` (what `GROUPING SETS`, `ROLLUP`, `CUBE` and distinct aggregates
//! plan): every input row produces one output row per projection.
//!
//! Output order: for each input *batch*, all its rows under the first projection, then all
//! under the second, and so on. Spark emits, for each *row*, its projections one after the
//! other; the rows are the same and Spark never relies on this order (Expand feeds an
//! aggregation), while whole-batch projections avoid an interleaving copy.

use std::fmt::{self, Debug, Formatter};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err, plan_err};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet, RecordOutput,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream, apply_expression_roots,
};
use futures::StreamExt;

/// One output batch per input batch and projection.
pub struct ExpandExec {
    input: Arc<dyn ExecutionPlan>,
    projections: Arc<Vec<Vec<Arc<dyn PhysicalExpr>>>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ExpandExec {
    /// Checks that every projection produces `schema`'s column types.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        projections: Vec<Vec<Arc<dyn PhysicalExpr>>>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let input_schema = input.schema();
        for (p, exprs) in projections.iter().enumerate() {
            if exprs.len() != schema.fields().len() {
                return plan_err!(
                    "expand projection {p} has {} expressions for {} columns",
                    exprs.len(),
                    schema.fields().len()
                );
            }
            for (expr, field) in exprs.iter().zip(schema.fields()) {
                let data_type = expr.data_type(&input_schema)?;
                if &data_type != field.data_type() {
                    return plan_err!(
                        "expand projection {p} gives {data_type} for column {} of type {}",
                        field.name(),
                        field.data_type()
                    );
                }
            }
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            input,
            projections: Arc::new(projections),
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl Debug for ExpandExec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "ExpandExec({} projections)", self.projections.len())
    }
}

impl DisplayAs for ExpandExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        let projections: Vec<String> = self
            .projections
            .iter()
            .map(|exprs| {
                let exprs: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                format!("[{}]", exprs.join(", "))
            })
            .collect();
        write!(f, "ExpandExec: projections=[{}]", projections.join(", "))
    }
}

impl ExecutionPlan for ExpandExec {
    fn name(&self) -> &str {
        "ExpandExec"
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
        apply_expression_roots(self.projections.iter().flatten(), f)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("ExpandExec has one child");
        }
        Ok(Arc::new(Self::try_new(
            children.swap_remove(0),
            self.projections.as_ref().clone(),
            self.schema(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("ExpandExec has one partition, not {partition}");
        }
        let input = self.input.execute(0, context)?;
        let schema = self.schema();
        let projections = Arc::clone(&self.projections);
        let output_schema = Arc::clone(&schema);
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let stream = input.flat_map(move |batch| {
            let outputs: Vec<Result<RecordBatch>> = match batch {
                Ok(batch) => {
                    let _timer = baseline.elapsed_compute().timer();
                    projections
                        .iter()
                        .map(|exprs| {
                            project(&batch, exprs, &output_schema).record_output(&baseline)
                        })
                        .collect()
                }
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(outputs)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

fn project(
    batch: &RecordBatch,
    exprs: &[Arc<dyn PhysicalExpr>],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let columns = exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}
