//! The boundary between Spark operators in a task's engine plan: where cancellation is
//! checked and where each operator's memory is counted.
//!
//! Operators do not return to their caller while their input keeps producing: an aggregation
//! over a join that multiplies rows computes for minutes inside one poll of the top stream.
//! So the cancellation check sits between operators: every Spark operator's engine plan is
//! wrapped in an [`OperatorBoundaryExec`] that fails its stream at the next batch once the task
//! is cancelled, or once native memory passes its limit (see [`crate::allocator`]). The same wrapper gives the operator's engine operators a [`NodeMemoryPool`].

use std::fmt::{self, Debug, Formatter};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, internal_err};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::memory::{NodeMemoryPool, runtime_with_pool};

/// The message of the error a cancelled plan fails with.
pub const CANCELLED_MESSAGE: &str = "query cancelled";

/// A task's cancellation flag, shared by the operators that check it.
#[derive(Clone, Default)]
pub struct Cancellation(Arc<AtomicBool>);

impl Cancellation {
    /// Marks the task cancelled: its operators fail at their next batch.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The error a cancelled operator returns.
    pub fn error() -> DataFusionError {
        DataFusionError::Execution(CANCELLED_MESSAGE.to_string())
    }
}

/// Its input's batches, until the task is cancelled; same properties as the input, whose
/// operators reserve memory through `memory`.
pub struct OperatorBoundaryExec {
    input: Arc<dyn ExecutionPlan>,
    cancellation: Cancellation,
    memory: Arc<NodeMemoryPool>,
}

impl OperatorBoundaryExec {
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        cancellation: Cancellation,
        memory: Arc<NodeMemoryPool>,
    ) -> Self {
        Self {
            input,
            cancellation,
            memory,
        }
    }

    /// The wrapped plan.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl Debug for OperatorBoundaryExec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorBoundaryExec")
    }
}

impl DisplayAs for OperatorBoundaryExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorBoundaryExec")
    }
}

impl ExecutionPlan for OperatorBoundaryExec {
    fn name(&self) -> &str {
        "OperatorBoundaryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
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
            return internal_err!("OperatorBoundaryExec has one child");
        }
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.cancellation.clone(),
            Arc::clone(&self.memory),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(
            partition,
            Arc::new(with_memory_pool(&context, &self.memory)),
        )?;
        let schema = input.schema();
        let cancellation = self.cancellation.clone();
        let stream = input.map(move |batch| {
            if cancellation.is_cancelled() {
                return Err(Cancellation::error());
            }
            crate::allocator::check_limit()?;
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// `context` with `pool` as its memory pool (and everything else shared).
fn with_memory_pool(context: &TaskContext, pool: &Arc<NodeMemoryPool>) -> TaskContext {
    let runtime = runtime_with_pool(
        &context.runtime_env(),
        Arc::clone(pool) as Arc<dyn MemoryPool>,
    );
    TaskContext::new(
        context.task_id(),
        context.session_id(),
        context.session_config().clone(),
        context.scalar_functions().clone(),
        context.higher_order_functions().clone(),
        context.aggregate_functions().clone(),
        context.window_functions().clone(),
        Arc::new(runtime),
    )
}
