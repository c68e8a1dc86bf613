//! Helpers shared by the integration tests: protobuf plan builders, in-memory inputs and
//! row rendering for order-insensitive comparisons.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use arrow::array::{Array, RecordBatch};
use arrow::util::display::array_value_to_string;
use ballista_spark_core::execution::TaskExecution;
use ballista_spark_core::input::BatchSource;
use ballista_spark_proto as pb;
use datafusion::common::Result;

pub fn ty(id: pb::TypeId) -> pb::DataType {
    pb::DataType {
        id: id as i32,
        precision: 0,
        scale: 0,
    }
}

pub fn field(name: &str, data_type: pb::DataType) -> pb::Field {
    pb::Field {
        name: name.into(),
        data_type: Some(data_type),
        nullable: true,
    }
}

pub fn schema(fields: Vec<pb::Field>) -> pb::Schema {
    pb::Schema { fields }
}

pub fn col(index: u32, data_type: pb::DataType) -> pb::Expr {
    pb::Expr {
        kind: Some(pb::expr::Kind::Column(pb::BoundReference {
            index,
            data_type: Some(data_type),
            nullable: true,
        })),
    }
}

pub fn literal(data_type: pb::DataType, value: Option<pb::literal::Value>) -> pb::Literal {
    pb::Literal {
        data_type: Some(data_type),
        value,
    }
}

pub fn lit(data_type: pb::DataType, value: Option<pb::literal::Value>) -> pb::Expr {
    pb::Expr {
        kind: Some(pb::expr::Kind::Literal(literal(data_type, value))),
    }
}

pub fn long(v: i64) -> Option<pb::literal::Value> {
    Some(pb::literal::Value::LongValue(v))
}

pub fn binary(op: pb::BinaryOp, left: pb::Expr, right: pb::Expr) -> pb::Expr {
    pb::Expr {
        kind: Some(pb::expr::Kind::Binary(Box::new(pb::BinaryExpr {
            op: op as i32,
            left: Some(Box::new(left)),
            right: Some(Box::new(right)),
            return_type: Some(ty(pb::TypeId::Boolean)),
            eval_mode: pb::EvalMode::Legacy as i32,
        }))),
    }
}

pub fn not(child: pb::Expr) -> pb::Expr {
    pb::Expr {
        kind: Some(pb::expr::Kind::Unary(Box::new(pb::UnaryExpr {
            op: pb::UnaryOp::Not as i32,
            child: Some(Box::new(child)),
        }))),
    }
}

pub fn node(kind: pb::plan_node::Kind) -> pb::PlanNode {
    pb::PlanNode {
        kind: Some(kind),
        metrics_id: 0,
    }
}

pub fn input(index: u32, fields: Vec<pb::Field>) -> pb::PlanNode {
    node(pb::plan_node::Kind::JvmInput(pb::JvmInput {
        index,
        schema: Some(schema(fields)),
    }))
}

pub fn plan(root: pb::PlanNode, output: Vec<pb::Field>) -> pb::Plan {
    pb::Plan {
        root: Some(root),
        output_schema: Some(schema(output)),
        session_timezone: "UTC".into(),
        batch_size: 4,
        ..Default::default()
    }
}

/// Batches handed to a plan as one of its inputs.
pub struct VecSource(Mutex<Vec<RecordBatch>>);

impl BatchSource for VecSource {
    fn next_batch(&self) -> Result<Option<RecordBatch>> {
        let mut batches = self.0.lock().unwrap();
        Ok((!batches.is_empty()).then(|| batches.remove(0)))
    }
}

pub fn source(batches: Vec<RecordBatch>) -> Arc<dyn BatchSource> {
    Arc::new(VecSource(Mutex::new(batches)))
}

pub fn run(plan: &pb::Plan, inputs: Vec<Arc<dyn BatchSource>>) -> Result<Vec<RecordBatch>> {
    let mut execution = TaskExecution::from_plan(plan, inputs, None)?;
    let mut batches = vec![];
    while let Some(batch) = execution.next_batch()? {
        batches.push(batch);
    }
    Ok(batches)
}

/// Every row as "v1,v2,..." (null as `null`), in output order.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = vec![];
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(row) {
                        "null".to_string()
                    } else {
                        array_value_to_string(c, row).unwrap()
                    }
                })
                .collect();
            out.push(values.join(","));
        }
    }
    out
}

/// The rows, sorted (for operators whose output order is unspecified).
pub fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = rows(batches);
    rows.sort();
    rows
}

/// `expected` as sorted owned strings.
pub fn sorted(expected: &[&str]) -> Vec<String> {
    let mut rows: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    rows.sort();
    rows
}
