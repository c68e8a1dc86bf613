//! Reading a filtered scan's strings as views, made plain after the filter.
//!
//! Spark's plans take strings as plain UTF-8 arrays, which the Parquet decoder fills by
//! copying every value: for dictionary-encoded pages, one copy out of the dictionary per row.
//! A scan whose filter keeps few rows (TPC-H's `l_shipmode IN (...)`) pays that copy for rows
//! it drops at once. Decoded as views (`Utf8View`), a value is 16 bytes pointing into the
//! page's buffer; the filter runs on the views, and only the rows it keeps are copied into
//! plain arrays, so the plan above sees exactly the types it always did.
//!
//! Views reach only expressions known to take them: comparisons, `IN` lists, `LIKE` and null
//! tests whose string operands are columns and literals ([`filter_takes_views`]); literals
//! beside a view column are planned as views (see `expressions`).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use ballista_spark_proto as pb;
use datafusion::common::{Result, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;

/// Whether a scan of `scan` under a filter of `predicate` should decode its strings as
/// views: it has string data columns, no string partition columns (their values are plain
/// literals), and the predicate takes views.
pub fn applies(scan: &pb::ParquetScan, predicate: &pb::Expr) -> bool {
    let has_strings = |schema: &Option<pb::Schema>| {
        schema.as_ref().is_some_and(|s| {
            s.fields
                .iter()
                .any(|f| f.data_type.as_ref().is_some_and(is_string))
        })
    };
    has_strings(&scan.data_schema)
        && !has_strings(&scan.partition_schema)
        && filter_takes_views(predicate)
}

/// Whether `expr` can be evaluated with its string columns as views: each string-typed leaf
/// (column or literal) is an operand of a comparison, an `IN` list, a `LIKE` or a null test
/// whose string operands are all such leaves, and no other expression sees a string.
pub fn filter_takes_views(expr: &pb::Expr) -> bool {
    use pb::expr::Kind;
    let Some(kind) = &expr.kind else {
        return false;
    };
    match kind {
        Kind::Column(c) => !c.data_type.as_ref().is_some_and(is_string),
        Kind::Literal(l) => !l.data_type.as_ref().is_some_and(is_string),
        Kind::Binary(b) if is_comparison(b.op) => {
            let operands = children(expr);
            if operands.iter().any(|e| is_string_leaf(e)) {
                operands.iter().all(|e| is_string_leaf(e))
            } else {
                operands.into_iter().all(filter_takes_views)
            }
        }
        Kind::Unary(u) if is_null_test(u.op) && u.child.as_deref().is_some_and(is_string_leaf) => {
            true
        }
        Kind::InList(i) if i.value.as_deref().is_some_and(is_string_leaf) => {
            i.list.iter().all(is_string_literal)
        }
        Kind::Like(l) => {
            l.value.as_deref().is_some_and(is_string_leaf)
                && l.pattern.as_deref().is_some_and(is_string_literal)
        }
        _ => children(expr).into_iter().all(filter_takes_views),
    }
}

/// The direct sub-expressions of `expr`.
fn children(expr: &pb::Expr) -> Vec<&pb::Expr> {
    use pb::expr::Kind;
    match &expr.kind {
        None | Some(Kind::Column(_) | Kind::Literal(_)) => vec![],
        Some(Kind::Binary(b)) => operands(&b.left, &b.right),
        Some(Kind::Unary(u)) => u.child.as_deref().into_iter().collect(),
        Some(Kind::Cast(c)) => c.child.as_deref().into_iter().collect(),
        Some(Kind::UnscaledValue(u)) => u.child.as_deref().into_iter().collect(),
        Some(Kind::MakeDecimal(m)) => m.child.as_deref().into_iter().collect(),
        Some(Kind::CaseWhen(c)) => c
            .branches
            .iter()
            .flat_map(|b| [&b.when, &b.then])
            .flatten()
            .chain(c.else_expr.as_deref())
            .collect(),
        Some(Kind::InList(i)) => i.value.as_deref().into_iter().chain(&i.list).collect(),
        Some(Kind::Like(l)) => operands(&l.value, &l.pattern),
        Some(Kind::DatePart(d)) => d.child.as_deref().into_iter().collect(),
        Some(Kind::DateArithmetic(d)) => operands(&d.left, &d.right),
        Some(Kind::ScalarFunction(f)) => f.args.iter().collect(),
        Some(Kind::BloomFilterMightContain(m)) => operands(&m.bloom_filter, &m.value),
    }
}

/// The operands of a two-operand expression that are set.
fn operands<'a>(
    left: &'a Option<Box<pb::Expr>>,
    right: &'a Option<Box<pb::Expr>>,
) -> Vec<&'a pb::Expr> {
    [left, right].into_iter().flatten().map(|e| &**e).collect()
}

/// The input columns `exprs` read.
pub fn columns_read<'a>(exprs: impl IntoIterator<Item = &'a pb::Expr>) -> HashSet<usize> {
    let mut read = HashSet::new();
    let mut pending: Vec<&pb::Expr> = exprs.into_iter().collect();
    while let Some(expr) = pending.pop() {
        if let Some(pb::expr::Kind::Column(c)) = &expr.kind {
            read.insert(c.index as usize);
        }
        pending.extend(children(expr));
    }
    read
}

fn is_string(data_type: &pb::DataType) -> bool {
    data_type.id == pb::TypeId::String as i32
}

fn is_string_leaf(expr: &pb::Expr) -> bool {
    use pb::expr::Kind;
    match &expr.kind {
        Some(Kind::Column(c)) => c.data_type.as_ref().is_some_and(is_string),
        _ => is_string_literal(expr),
    }
}

fn is_string_literal(expr: &pb::Expr) -> bool {
    matches!(&expr.kind, Some(pb::expr::Kind::Literal(l)) if l.data_type.as_ref().is_some_and(is_string))
}

fn is_null_test(op: i32) -> bool {
    matches!(
        pb::UnaryOp::try_from(op),
        Ok(pb::UnaryOp::IsNull | pb::UnaryOp::IsNotNull)
    )
}

fn is_comparison(op: i32) -> bool {
    use pb::BinaryOp;
    matches!(
        BinaryOp::try_from(op),
        Ok(BinaryOp::Eq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq
            | BinaryOp::EqNullSafe)
    )
}

/// `schema` with its plain string fields as views.
pub fn with_views(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// `plan` with its view columns copied into plain strings, as the plan above expects; when
/// the plan above reads only the columns `read`, the others are left null rather than copied.
pub fn to_plain_strings(
    plan: Arc<dyn ExecutionPlan>,
    read: Option<&HashSet<usize>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema: SchemaRef = plan.schema();
    let exprs = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(field.name(), index));
            let expr: Arc<dyn PhysicalExpr> = match field.data_type() {
                DataType::Utf8View if read.is_some_and(|r| !r.contains(&index)) => {
                    Arc::new(Literal::new(ScalarValue::Utf8(None)))
                }
                DataType::Utf8View => Arc::new(CastExpr::new(column, DataType::Utf8, None)),
                _ => column,
            };
            (expr, field.name().clone())
        })
        .collect::<Vec<_>>();
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(id: pb::TypeId) -> pb::DataType {
        pb::DataType {
            id: id as i32,
            ..Default::default()
        }
    }

    fn column(index: u32, id: pb::TypeId) -> pb::Expr {
        pb::Expr {
            kind: Some(pb::expr::Kind::Column(pb::BoundReference {
                index,
                data_type: Some(ty(id)),
                nullable: true,
            })),
        }
    }

    fn string(value: &str) -> pb::Expr {
        pb::Expr {
            kind: Some(pb::expr::Kind::Literal(pb::Literal {
                data_type: Some(ty(pb::TypeId::String)),
                value: Some(pb::literal::Value::StringValue(value.into())),
            })),
        }
    }

    fn binary(op: pb::BinaryOp, left: pb::Expr, right: pb::Expr) -> pb::Expr {
        pb::Expr {
            kind: Some(pb::expr::Kind::Binary(Box::new(pb::BinaryExpr {
                op: op as i32,
                left: Some(Box::new(left)),
                right: Some(Box::new(right)),
                ..Default::default()
            }))),
        }
    }

    fn cast(child: pb::Expr, to: pb::TypeId) -> pb::Expr {
        pb::Expr {
            kind: Some(pb::expr::Kind::Cast(Box::new(pb::Cast {
                child: Some(Box::new(child)),
                to: Some(ty(to)),
                ..Default::default()
            }))),
        }
    }

    #[test]
    fn comparisons_of_string_columns_with_literals_take_views() {
        let mode = || column(1, pb::TypeId::String);
        let date = || column(0, pb::TypeId::Date);
        assert!(filter_takes_views(&binary(
            pb::BinaryOp::And,
            binary(pb::BinaryOp::Eq, mode(), string("MAIL")),
            binary(pb::BinaryOp::Lt, date(), date()),
        )));
        assert!(filter_takes_views(&binary(
            pb::BinaryOp::LtEq,
            mode(),
            column(2, pb::TypeId::String)
        )));
    }

    #[test]
    fn strings_anywhere_else_do_not_take_views() {
        let mode = || column(1, pb::TypeId::String);
        // A string cast to a number, a string column as a boolean's operand, a string result.
        assert!(!filter_takes_views(&binary(
            pb::BinaryOp::Eq,
            cast(mode(), pb::TypeId::Int32),
            cast(string("1"), pb::TypeId::Int32),
        )));
        assert!(!filter_takes_views(&mode()));
        assert!(!filter_takes_views(&binary(
            pb::BinaryOp::Eq,
            cast(column(0, pb::TypeId::Int32), pb::TypeId::String),
            string("1"),
        )));
        // An expression without a kind is not understood, so not viewed.
        assert!(!filter_takes_views(&pb::Expr { kind: None }));
    }
}
