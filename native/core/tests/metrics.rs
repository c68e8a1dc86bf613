//! Per-node metrics of a task's plan: counted by the engine operators a node became, down to
//! the next node with a metrics id.

mod common;

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use ballista_spark_core::execution::TaskExecution;
use ballista_spark_proto as pb;
use common::*;
use datafusion::common::Result;

fn tagged(kind: pb::plan_node::Kind, metrics_id: u32) -> pb::PlanNode {
    pb::PlanNode {
        kind: Some(kind),
        metrics_id,
    }
}

/// 0..10 in batches of 4, 3 and 3 rows.
fn numbers() -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
    [0..4, 4..7, 7..10]
        .into_iter()
        .map(|r| {
            let values: Vec<i64> = r.collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(values))],
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn each_tagged_node_reports_its_own_rows() -> Result<()> {
    let a = || vec![field("a", ty(pb::TypeId::Int64))];
    let long_ty = || ty(pb::TypeId::Int64);
    // Expand(id 1, two projections) over Filter(id 2, a > 4) over an untagged input.
    let filter = tagged(
        pb::plan_node::Kind::Filter(Box::new(pb::Filter {
            input: Some(Box::new(input(0, a()))),
            predicate: Some(binary(
                pb::BinaryOp::Gt,
                col(0, long_ty()),
                lit(long_ty(), long(4)),
            )),
        })),
        2,
    );
    let projection = |offset: i64| pb::ExpandProjection {
        exprs: vec![binary_add(col(0, long_ty()), lit(long_ty(), long(offset)))],
    };
    let expand = tagged(
        pb::plan_node::Kind::Expand(Box::new(pb::Expand {
            input: Some(Box::new(filter)),
            projections: vec![projection(0), projection(100)],
            schema: Some(schema(a())),
        })),
        1,
    );
    let mut execution =
        TaskExecution::from_plan(&plan(expand, a()), vec![source(numbers())], None)?;
    let mut rows = 0;
    while let Some(batch) = execution.next_batch()? {
        rows += batch.num_rows();
    }
    assert_eq!(rows, 10);

    let metrics = execution.metrics();
    let by_id = |id: u32| {
        metrics
            .nodes
            .iter()
            .find(|n| n.metrics_id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no metrics for node {id}: {metrics:?}"))
    };
    assert_eq!(metrics.nodes.len(), 2);
    let expand = by_id(1);
    assert_eq!(expand.output_rows, 10);
    assert!(expand.output_batches >= 2, "{expand:?}");
    assert!(expand.elapsed_compute_nanos > 0, "{expand:?}");
    // The filter's rows are its own, not the Expand's.
    let filter = by_id(2);
    assert_eq!(filter.output_rows, 5);
    assert!(filter.elapsed_compute_nanos > 0, "{filter:?}");
    assert_eq!(filter.spill_count, 0);
    Ok(())
}

#[test]
fn an_untagged_plan_reports_nothing() -> Result<()> {
    let a = vec![field("a", ty(pb::TypeId::Int64))];
    let mut execution =
        TaskExecution::from_plan(&plan(input(0, a.clone()), a), vec![source(numbers())], None)?;
    while execution.next_batch()?.is_some() {}
    assert!(execution.metrics().nodes.is_empty());
    Ok(())
}

#[test]
fn cancelling_makes_the_next_batch_fail() -> Result<()> {
    let a = vec![field("a", ty(pb::TypeId::Int64))];
    let mut execution =
        TaskExecution::from_plan(&plan(input(0, a.clone()), a), vec![source(numbers())], None)?;
    assert!(execution.next_batch()?.is_some());
    execution.canceller().cancel();
    let error = execution.next_batch().expect_err("a cancelled plan fails");
    assert!(error.to_string().contains("cancelled"), "{error}");
    // And stays ended.
    assert!(execution.next_batch()?.is_none());
    Ok(())
}

fn binary_add(left: pb::Expr, right: pb::Expr) -> pb::Expr {
    let mut expr = binary(pb::BinaryOp::Add, left, right);
    if let Some(pb::expr::Kind::Binary(b)) = expr.kind.as_mut() {
        b.return_type = Some(ty(pb::TypeId::Int64));
    }
    expr
}

#[test]
fn a_hash_aggregate_reports_its_peak_memory() -> Result<()> {
    let long_ty = || ty(pb::TypeId::Int64);
    let a = vec![field("a", long_ty())];
    let count = pb::AggregateFunction {
        kind: pb::AggregateFunctionKind::Count as i32,
        args: vec![col(0, long_ty())],
        arg_types: vec![long_ty()],
        result_type: Some(long_ty()),
        eval_mode: pb::EvalMode::Legacy as i32,
        name: "count".into(),
        ..Default::default()
    };
    let aggregate = tagged(
        pb::plan_node::Kind::HashAggregate(Box::new(pb::HashAggregate {
            input: Some(Box::new(input(0, a.clone()))),
            mode: pb::AggregateMode::Partial as i32,
            grouping: vec![pb::NamedExpr {
                expr: Some(col(0, long_ty())),
                name: "a".into(),
            }],
            functions: vec![count],
            result_exprs: vec![],
        })),
        1,
    );
    let out = vec![field("a", long_ty()), field("count", long_ty())];
    let mut execution =
        TaskExecution::from_plan(&plan(aggregate, out), vec![source(numbers())], None)?;
    let mut rows = 0;
    while let Some(batch) = execution.next_batch()? {
        rows += batch.num_rows();
    }
    assert_eq!(rows, 10);
    let node = execution.metrics().nodes[0];
    assert_eq!(node.output_rows, 10);
    assert!(node.peak_memory_bytes > 0, "{node:?}");
    Ok(())
}
