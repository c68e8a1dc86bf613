//! Metrics of a task's native plan, per Spark operator.
//!
//! A Spark operator becomes one plan node, which the planner may turn into several engine
//! operators (a join with its key projections, a sort with a limit). The plugin tags each plan
//! node with a metrics id; here the engine operators from that node's top down to (not
//! including) the tops of other tagged nodes count towards that id; the node's memory pool
//! gives its peak memory.

use std::collections::HashSet;
use std::sync::Arc;

use ballista_spark_proto as pb;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::{MetricValue, MetricsSet};

use crate::memory::NodeMemoryPool;
use crate::shuffle::flight::reader::{FETCH_RETRIES, FETCH_WAIT, FETCHED_BLOCKS, FETCHED_BYTES};

/// The engine operators of the tagged plan nodes of one task's plan.
#[derive(Default, Clone)]
pub struct MeteredNodes {
    /// Each tagged node's id, its top engine operator and its memory pool, in planning order.
    nodes: Vec<(u32, Arc<dyn ExecutionPlan>, Arc<NodeMemoryPool>)>,
}

impl MeteredNodes {
    /// Records that `plan` is the top engine operator of the node tagged `metrics_id`.
    pub fn record(
        &mut self,
        metrics_id: u32,
        plan: Arc<dyn ExecutionPlan>,
        memory: Arc<NodeMemoryPool>,
    ) {
        self.nodes.push((metrics_id, plan, memory));
    }

    /// The metrics of every tagged node, as the engine operators count them now.
    pub fn metrics(&self) -> pb::PlanMetrics {
        let tops: HashSet<usize> = self.nodes.iter().map(|(_, p, _)| address(p)).collect();
        let nodes = self
            .nodes
            .iter()
            .map(|(id, top, memory)| pb::NodeMetrics {
                peak_memory_bytes: memory.peak() as u64,
                ..node_metrics(*id, top, &tops)
            })
            .collect();
        pb::PlanMetrics { nodes }
    }
}

/// Identity of an engine operator (the data pointer, without the vtable).
fn address(plan: &Arc<dyn ExecutionPlan>) -> usize {
    Arc::as_ptr(plan) as *const () as usize
}

fn node_metrics(id: u32, top: &Arc<dyn ExecutionPlan>, tops: &HashSet<usize>) -> pb::NodeMetrics {
    let mut out = pb::NodeMetrics {
        metrics_id: id,
        ..Default::default()
    };
    if let Some(set) = top.metrics() {
        out.output_rows = set.output_rows().unwrap_or(0) as u64;
        out.output_batches = sum(&set, |v| matches!(v, MetricValue::OutputBatches(_)));
    }
    let mut pending: Vec<&Arc<dyn ExecutionPlan>> = vec![top];
    while let Some(plan) = pending.pop() {
        if let Some(set) = plan.metrics() {
            add_operator(&mut out, &set);
        }
        pending.extend(
            plan.children()
                .into_iter()
                .filter(|child| !tops.contains(&address(child))),
        );
    }
    out
}

/// Adds one engine operator's own metrics to its node's.
fn add_operator(out: &mut pb::NodeMetrics, set: &MetricsSet) {
    out.elapsed_compute_nanos += set.elapsed_compute().unwrap_or(0) as u64;
    out.spill_count += set.spill_count().unwrap_or(0) as u64;
    out.spilled_bytes += set.spilled_bytes().unwrap_or(0) as u64;
    out.bytes_scanned += sum(
        set,
        |v| matches!(v, MetricValue::Count { name, .. } if name == "bytes_scanned"),
    );
    out.fetched_bytes += sum(
        set,
        |v| matches!(v, MetricValue::Count { name, .. } if name == FETCHED_BYTES),
    );
    out.fetched_blocks += sum(
        set,
        |v| matches!(v, MetricValue::Count { name, .. } if name == FETCHED_BLOCKS),
    );
    out.fetch_retries += sum(
        set,
        |v| matches!(v, MetricValue::Count { name, .. } if name == FETCH_RETRIES),
    );
    out.fetch_wait_nanos += sum(
        set,
        |v| matches!(v, MetricValue::Time { name, .. } if name == FETCH_WAIT),
    );
    for metric in set.iter() {
        if let MetricValue::PruningMetrics {
            name,
            pruning_metrics,
        } = metric.value()
        {
            let pruned = pruning_metrics.pruned() as u64;
            match name.as_ref() {
                "files_ranges_pruned_statistics" => out.files_pruned += pruned,
                "row_groups_pruned_statistics" => out.row_groups_pruned += pruned,
                _ => {}
            }
        }
    }
}

/// The sum of the values of the metrics `wanted` selects.
fn sum(set: &MetricsSet, wanted: impl Fn(&MetricValue) -> bool) -> u64 {
    set.iter()
        .filter(|m| wanted(m.value()))
        .map(|m| m.value().as_usize() as u64)
        .sum()
}
