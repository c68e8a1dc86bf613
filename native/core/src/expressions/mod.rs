//! Spark expressions (bound protobuf `Expr`s) to DataFusion physical expressions.
//!
//! DataFusion's own expressions are used where their semantics equal Spark's (column
//! references, literals, comparisons of equal types, three-valued `AND`/`OR`/`NOT`, null
//! tests); Spark-specific ones live in the submodules.

pub mod arithmetic;
pub mod bloom_filter;
pub mod cast;
pub mod datetime;
pub mod decimal_scaling;
pub mod functions;
pub mod kernel_expr;
pub mod normalize;
pub mod remainder;

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use ballista_spark_proto as pb;
use datafusion::common::{Result, ScalarValue, plan_datafusion_err, plan_err};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, IsNotNullExpr, IsNullExpr, Literal, NegativeExpr, NotExpr,
};

use crate::kernels::decimal::DecimalOp;
use crate::types::{arrow_type, literal_value};
use arithmetic::{EvalMode, SparkArithmetic};
use cast::spark_cast_in_zone;
use decimal_scaling::{make_decimal, unscaled_value};
use normalize::{normalize_if_float, normalize_nan_and_zero};
use remainder::{RemainderKind, SparkRemainder};

/// Creates the physical expression for `expr`, bound to `input_schema`.
pub fn create_physical_expr(
    expr: &pb::Expr,
    input_schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    use pb::expr::Kind;
    let kind = expr
        .kind
        .as_ref()
        .ok_or_else(|| plan_datafusion_err!("expression kind not set"))?;
    match kind {
        Kind::Column(c) => column(c, input_schema),
        Kind::Literal(l) => Ok(Arc::new(Literal::new(literal_value(l)?))),
        Kind::Binary(b) => binary(b, input_schema),
        Kind::Unary(u) => {
            let child = create_physical_expr(required(&u.child, "unary child")?, input_schema)?;
            match pb::UnaryOp::try_from(u.op) {
                Ok(pb::UnaryOp::Not) => Ok(Arc::new(NotExpr::new(child))),
                Ok(pb::UnaryOp::IsNull) => Ok(Arc::new(IsNullExpr::new(child))),
                Ok(pb::UnaryOp::IsNotNull) => Ok(Arc::new(IsNotNullExpr::new(child))),
                Ok(pb::UnaryOp::Negate) => Ok(Arc::new(NegativeExpr::new(child))),
                Ok(pb::UnaryOp::NormalizeNanAndZero) => normalize_nan_and_zero(child, input_schema),
                _ => plan_err!("unknown unary operator {}", u.op),
            }
        }
        Kind::Cast(c) => {
            let child = create_physical_expr(required(&c.child, "cast child")?, input_schema)?;
            let to = arrow_type(required(&c.to, "cast type")?)?;
            spark_cast_in_zone(
                child,
                to,
                eval_mode(c.eval_mode)?,
                &c.timezone,
                input_schema,
            )
        }
        Kind::CaseWhen(c) => functions::case_when(c, input_schema),
        Kind::InList(i) => functions::in_list(i, input_schema),
        Kind::Like(l) => functions::like(l, input_schema),
        Kind::DatePart(d) => datetime::date_part(d, input_schema),
        Kind::DateArithmetic(d) => datetime::date_arithmetic(d, input_schema),
        Kind::ScalarFunction(f) => functions::scalar_function(f, input_schema),
        Kind::BloomFilterMightContain(m) => bloom_filter::might_contain(m, input_schema),
        Kind::UnscaledValue(u) => {
            let child =
                create_physical_expr(required(&u.child, "UnscaledValue child")?, input_schema)?;
            unscaled_value(child, input_schema)
        }
        Kind::MakeDecimal(m) => {
            let child =
                create_physical_expr(required(&m.child, "MakeDecimal child")?, input_schema)?;
            let to = arrow_type(required(&m.to, "MakeDecimal type")?)?;
            make_decimal(child, to, m.null_on_overflow, input_schema)
        }
    }
}

/// A required sub-message, or a plan error naming it.
pub(crate) fn required<'a, T>(field: &'a Option<T>, what: &str) -> Result<&'a T> {
    field
        .as_ref()
        .ok_or_else(|| plan_datafusion_err!("{what} not set"))
}

pub(crate) fn eval_mode(mode: i32) -> Result<EvalMode> {
    match pb::EvalMode::try_from(mode) {
        Ok(pb::EvalMode::Legacy) => Ok(EvalMode::Legacy),
        Ok(pb::EvalMode::Ansi) => Ok(EvalMode::Ansi),
        Ok(pb::EvalMode::Try) => Ok(EvalMode::Try),
        Err(_) => plan_err!("unknown eval mode {mode}"),
    }
}

fn column(c: &pb::BoundReference, input_schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    let index = c.index as usize;
    let field = input_schema.fields().get(index).ok_or_else(|| {
        plan_datafusion_err!(
            "column {index} out of range for an input of {} columns",
            input_schema.fields().len()
        )
    })?;
    let expected = arrow_type(required(&c.data_type, "column type")?)?;
    // A scan under a filter may decode strings as views (see `scan::string_views`).
    let as_view = expected == DataType::Utf8 && field.data_type() == &DataType::Utf8View;
    if field.data_type() != &expected && !as_view {
        return plan_err!(
            "column {index} has type {} but the plan expects {expected}",
            field.data_type()
        );
    }
    Ok(Arc::new(Column::new(field.name(), index)))
}

fn binary(b: &pb::BinaryExpr, input_schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    let left = create_physical_expr(required(&b.left, "left operand")?, input_schema)?;
    let right = create_physical_expr(required(&b.right, "right operand")?, input_schema)?;
    let viewed_left = string_literal_as(Arc::clone(&left), &right, input_schema)?;
    let right = string_literal_as(right, &left, input_schema)?;
    let left = viewed_left;
    let op = pb::BinaryOp::try_from(b.op)
        .map_err(|_| plan_datafusion_err!("unknown binary operator {}", b.op))?;
    let remainder = match op {
        pb::BinaryOp::Remainder => Some(RemainderKind::Remainder),
        pb::BinaryOp::Pmod => Some(RemainderKind::Pmod),
        _ => None,
    };
    if let Some(kind) = remainder {
        if eval_mode(b.eval_mode)? != EvalMode::Legacy {
            return plan_err!("{kind:?} is native outside ANSI and TRY mode only");
        }
        let return_type = arrow_type(required(&b.return_type, "remainder result type")?)?;
        return Ok(Arc::new(SparkRemainder::try_new(
            kind,
            left,
            right,
            return_type,
            input_schema,
        )?));
    }
    let arithmetic = match op {
        pb::BinaryOp::Add => Some(DecimalOp::Add),
        pb::BinaryOp::Subtract => Some(DecimalOp::Subtract),
        pb::BinaryOp::Multiply => Some(DecimalOp::Multiply),
        pb::BinaryOp::Divide => Some(DecimalOp::Divide),
        _ => None,
    };
    if let Some(op) = arithmetic {
        let return_type = arrow_type(required(&b.return_type, "arithmetic result type")?)?;
        return Ok(Arc::new(SparkArithmetic::try_new(
            op,
            left,
            right,
            return_type,
            eval_mode(b.eval_mode)?,
            input_schema,
        )?));
    }
    let df_op = match op {
        pb::BinaryOp::Eq => Operator::Eq,
        pb::BinaryOp::Lt => Operator::Lt,
        pb::BinaryOp::LtEq => Operator::LtEq,
        pb::BinaryOp::Gt => Operator::Gt,
        pb::BinaryOp::GtEq => Operator::GtEq,
        pb::BinaryOp::EqNullSafe => Operator::IsNotDistinctFrom,
        pb::BinaryOp::And => Operator::And,
        pb::BinaryOp::Or => Operator::Or,
        _ => return plan_err!("unsupported binary operator {op:?}"),
    };
    if matches!(df_op, Operator::And | Operator::Or) {
        return Ok(Arc::new(BinaryExpr::new(left, df_op, right)));
    }
    let (lt, rt) = (
        left.data_type(input_schema)?,
        right.data_type(input_schema)?,
    );
    if lt != rt {
        return plan_err!("comparison of different types {lt} and {rt}");
    }
    // Spark's float comparisons treat all NaNs as equal (and largest) and -0.0 as 0.0.
    let left = normalize_if_float(left, input_schema)?;
    let right = normalize_if_float(right, input_schema)?;
    Ok(Arc::new(BinaryExpr::new(left, df_op, right)))
}

/// `expr`, a string literal, as a view literal where `beside` (the other operand) is a view
/// column (see `scan::string_views`); any other `expr` as it is.
pub(crate) fn string_literal_as(
    expr: Arc<dyn PhysicalExpr>,
    beside: &Arc<dyn PhysicalExpr>,
    input_schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    match expr.downcast_ref::<Literal>().map(|l| l.value()) {
        Some(ScalarValue::Utf8(value)) if beside.data_type(input_schema)? == DataType::Utf8View => {
            Ok(Arc::new(Literal::new(ScalarValue::Utf8View(value.clone()))))
        }
        _ => Ok(expr),
    }
}
