//! Spark's null-aware anti join (`NOT IN` subquery) built from its `NOT IN` list.
//!
//! DataFusion implements null awareness only by building the side whose rows it outputs, so a
//! `NOT IN` against a small broadcast list would hold the whole large side in a hash table
//! and return it only at the end. [`NotInJoinExec`] instead reads the list first and decides
//! by Spark's rules: an empty list keeps every row (null keys too), a list with a null keeps
//! none, and otherwise the rows stream through an anti join built from the list, those with a
//! null key dropped.

use std::fmt::{self, Formatter};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinType, NullEquality, Result, internal_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::IsNotNullExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExecBuilder, PartitionMode};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, Metric, MetricValue, MetricsSet, RecordOutput, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, EmptyRecordBatchStream, ExecutionPlan, PlanProperties,
    SendableRecordBatchStream, apply_expression_roots, collect,
};
use futures::TryStreamExt;

/// `input` rows whose key is `NOT IN` the keys of `list` (one key, Spark's semantics).
#[derive(Debug)]
pub struct NotInJoinExec {
    input: Arc<dyn ExecutionPlan>,
    list: Arc<dyn ExecutionPlan>,
    /// The key of `input` and the key of `list`, each bound to its own side.
    input_key: PhysicalExprRef,
    list_key: PhysicalExprRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// The metrics of the anti joins (and their null-key filters) that `execute` plans once
    /// the list is known: not children, so their compute time is added to this operator's.
    /// Their metrics, not the plans, are kept: a finished join's hash table is freed.
    inner_metrics: Arc<Mutex<Vec<MetricsSet>>>,
}

impl NotInJoinExec {
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        list: Arc<dyn ExecutionPlan>,
        input_key: PhysicalExprRef,
        list_key: PhysicalExprRef,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            input.properties().output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            input,
            list,
            input_key,
            list_key,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
            inner_metrics: Arc::default(),
        }
    }
}

impl DisplayAs for NotInJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NotInJoinExec: {} NOT IN {}",
            self.input_key, self.list_key
        )
    }
}

impl ExecutionPlan for NotInJoinExec {
    fn name(&self) -> &str {
        "NotInJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input, &self.list]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots([&self.input_key, &self.list_key], f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input, list] = <[_; 2]>::try_from(children)
            .or_else(|_| internal_err!("NotInJoinExec has two children"))?;
        Ok(Arc::new(Self::new(
            input,
            list,
            Arc::clone(&self.input_key),
            Arc::clone(&self.list_key),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        let mut metrics = self.metrics.clone_inner();
        let inner = self
            .inner_metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !inner.is_empty() {
            let compute = Time::new();
            let nanos: usize = inner.iter().filter_map(MetricsSet::elapsed_compute).sum();
            compute.add_duration(Duration::from_nanos(nanos as u64));
            metrics.push(Arc::new(Metric::new(
                MetricValue::ElapsedCompute(compute),
                None,
            )));
        }
        Some(metrics)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = Arc::clone(&self.input);
        let list = Arc::clone(&self.list);
        let (input_key, list_key) = (Arc::clone(&self.input_key), Arc::clone(&self.list_key));
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let inner_metrics = Arc::clone(&self.inner_metrics);
        let rows = async move {
            let batches = collect(Arc::clone(&list), Arc::clone(&context)).await?;
            let mut has_keys = false;
            for batch in &batches {
                let keys = list_key.evaluate(batch)?.into_array(batch.num_rows())?;
                if keys.null_count() > 0 {
                    let none: SendableRecordBatchStream =
                        Box::pin(EmptyRecordBatchStream::new(input.schema()));
                    return Ok(none);
                }
                has_keys |= !keys.is_empty();
            }
            if !has_keys {
                return input.execute(partition, context);
            }
            let build = MemorySourceConfig::try_new_exec(&[batches], list.schema(), None)?;
            let probe = Arc::new(
                FilterExec::try_new(Arc::new(IsNotNullExpr::new(Arc::clone(&input_key))), input)?
                    .with_batch_size(context.session_config().batch_size())?,
            );
            let join = HashJoinExecBuilder::new(
                build,
                Arc::clone(&probe) as Arc<dyn ExecutionPlan>,
                vec![(list_key, input_key)],
                JoinType::RightAnti,
            )
            .with_partition_mode(PartitionMode::CollectLeft)
            .with_null_equality(NullEquality::NullEqualsNothing)
            .build_exec()?;
            let stream = join.execute(partition, context)?;
            // The sets share their counters with the operators, which keep counting.
            let sets = [join.metrics(), probe.metrics()];
            inner_metrics
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(sets.into_iter().flatten());
            Ok(stream)
        };
        let stream = futures::stream::once(rows)
            .try_flatten()
            .inspect_ok(move |batch| {
                batch.record_output(&baseline);
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}
