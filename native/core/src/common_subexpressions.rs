//! Evaluates once the arithmetic that several aggregate arguments share.
//!
//! Spark's generated code for a hash aggregation computes a common subexpression of its
//! functions' arguments once per row (TPC-H Q1's `l_extendedprice * (1 - l_discount)` feeds
//! two sums). DataFusion eliminates common subexpressions only in its logical optimizer,
//! which a translated Spark plan does not pass through, so the partial aggregation does it
//! here: shared subexpressions become columns of a projection below the aggregation.
//!
//! Only subexpressions reached through Spark arithmetic are shared. Arithmetic always
//! evaluates both operands, so a shared subexpression is computed for exactly the rows the
//! original arguments computed it for (no error appears that a conditional would have
//! avoided). A volatile subexpression (a random number) is never shared: Spark evaluates
//! each occurrence on its own.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;

use crate::expressions::arithmetic::SparkArithmetic;

/// Aggregate functions and the plan that feeds them.
pub type AggregateInput = (Vec<Arc<AggregateFunctionExpr>>, Arc<dyn ExecutionPlan>);

/// The aggregate functions over `input` with their shared arithmetic computed once: the
/// returned input is `input`'s columns, in place, followed by one column per shared
/// subexpression, and the functions read those columns. Without shared subexpressions,
/// `functions` and `input` come back unchanged.
pub fn share_aggregate_arguments(
    functions: Vec<Arc<AggregateFunctionExpr>>,
    input: Arc<dyn ExecutionPlan>,
) -> Result<AggregateInput> {
    let args: Vec<Arc<dyn PhysicalExpr>> = functions.iter().flat_map(|f| f.expressions()).collect();
    let shared = shared_subexpressions(&args);
    if shared.is_empty() {
        return Ok((functions, input));
    }
    let schema = input.schema();
    let width = schema.fields().len();
    let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| (Arc::new(Column::new(f.name(), i)) as _, f.name().clone()))
        .collect();
    let mut columns: Vec<Arc<dyn PhysicalExpr>> = Vec::with_capacity(shared.len());
    for (i, expr) in shared.iter().enumerate() {
        let name = format!("__shared_{i}");
        columns.push(Arc::new(Column::new(&name, width + i)));
        exprs.push((Arc::clone(expr), name));
    }
    let projection: Arc<dyn ExecutionPlan> = Arc::new(ProjectionExec::try_new(exprs, input)?);
    let functions = functions
        .into_iter()
        .map(|function| {
            let args = function
                .expressions()
                .into_iter()
                .map(|arg| replace_shared(arg, &shared, &columns))
                .collect::<Result<Vec<_>>>()?;
            let order_by = function
                .order_bys()
                .iter()
                .map(|s| Arc::clone(&s.expr))
                .collect();
            Ok(match function.with_new_expressions(args, order_by) {
                Some(rewritten) => Arc::new(rewritten),
                None => function,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((functions, projection))
}

/// The largest arithmetic subexpressions that occur more than once among `args`, each once.
pub fn shared_subexpressions(args: &[Arc<dyn PhysicalExpr>]) -> Vec<Arc<dyn PhysicalExpr>> {
    let mut counts: Vec<(Arc<dyn PhysicalExpr>, usize)> = vec![];
    for arg in args {
        count_arithmetic(arg, &mut counts);
    }
    let mut shared = vec![];
    for arg in args {
        choose_shared(arg, &counts, &mut shared);
    }
    shared
}

fn is_arithmetic(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<SparkArithmetic>().is_some()
}

/// Counts every arithmetic node reachable from `expr` through arithmetic.
fn count_arithmetic(
    expr: &Arc<dyn PhysicalExpr>,
    counts: &mut Vec<(Arc<dyn PhysicalExpr>, usize)>,
) {
    if !is_arithmetic(expr) {
        return;
    }
    match counts.iter_mut().find(|(e, _)| e.as_ref() == expr.as_ref()) {
        Some((_, n)) => *n += 1,
        None => counts.push((Arc::clone(expr), 1)),
    }
    for child in expr.children() {
        count_arithmetic(child, counts);
    }
}

/// Top-down: the first arithmetic node on each path that occurs more than once.
fn choose_shared(
    expr: &Arc<dyn PhysicalExpr>,
    counts: &[(Arc<dyn PhysicalExpr>, usize)],
    shared: &mut Vec<Arc<dyn PhysicalExpr>>,
) {
    if !is_arithmetic(expr) {
        return;
    }
    let occurrences = counts
        .iter()
        .find(|(e, _)| e.as_ref() == expr.as_ref())
        .map_or(0, |(_, n)| *n);
    if occurrences > 1 && !is_volatile(expr) {
        if !shared.iter().any(|s| s.as_ref() == expr.as_ref()) {
            shared.push(Arc::clone(expr));
        }
        return;
    }
    for child in expr.children() {
        choose_shared(child, counts, shared);
    }
}

/// `expr` with each occurrence of a shared subexpression replaced by its column.
fn replace_shared(
    expr: Arc<dyn PhysicalExpr>,
    shared: &[Arc<dyn PhysicalExpr>],
    columns: &[Arc<dyn PhysicalExpr>],
) -> Result<Arc<dyn PhysicalExpr>> {
    expr.transform_down(
        |node| match shared.iter().position(|s| s.as_ref() == node.as_ref()) {
            Some(i) => Ok(Transformed::yes(Arc::clone(&columns[i]))),
            None => Ok(Transformed::no(node)),
        },
    )
    .map(|t| t.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::{CastExpr, Literal};

    use crate::expressions::arithmetic::EvalMode;
    use crate::kernels::decimal::DecimalOp;

    fn schema() -> Schema {
        Schema::new(
            ["price", "discount", "tax"]
                .map(|name| Field::new(name, DataType::Decimal128(15, 2), true))
                .to_vec(),
        )
    }

    fn column(name: &str, index: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(name, index))
    }

    fn one() -> Arc<dyn PhysicalExpr> {
        Arc::new(Literal::new(ScalarValue::Decimal128(Some(1), 1, 0)))
    }

    fn arith(
        op: DecimalOp,
        l: Arc<dyn PhysicalExpr>,
        r: Arc<dyn PhysicalExpr>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let schema = schema();
        let (DataType::Decimal128(lp, ls), DataType::Decimal128(rp, rs)) =
            (l.data_type(&schema)?, r.data_type(&schema)?)
        else {
            unreachable!("decimal operands")
        };
        // Types as Spark derives them for * and -, bounded to 38 digits.
        let (p, s) = match op {
            DecimalOp::Multiply => (lp + rp + 1, ls + rs),
            _ => (lp.max(rp) + 1, ls.max(rs)),
        };
        let (p, s) = if p > 38 { (38, s.min(6)) } else { (p, s) };
        Ok(Arc::new(SparkArithmetic::try_new(
            op,
            l,
            r,
            DataType::Decimal128(p, s),
            EvalMode::Legacy,
            &schema,
        )?))
    }

    /// TPC-H Q1: `price * (1 - discount)` is summed alone and times `(1 + tax)`.
    fn discounted() -> Result<Arc<dyn PhysicalExpr>> {
        let net = arith(DecimalOp::Subtract, one(), column("discount", 1))?;
        arith(DecimalOp::Multiply, column("price", 0), net)
    }

    #[test]
    fn shares_the_largest_repeated_arithmetic_once() -> Result<()> {
        let charge = arith(
            DecimalOp::Multiply,
            discounted()?,
            arith(DecimalOp::Add, one(), column("tax", 2))?,
        )?;
        let args = vec![column("price", 0), discounted()?, charge];
        let shared = shared_subexpressions(&args);
        assert_eq!(shared.len(), 1);
        // The product, not also its operand `1 - discount` (computed once inside it).
        assert_eq!(shared[0].as_ref(), discounted()?.as_ref());
        Ok(())
    }

    /// `rand() * 2` twice is two random numbers in Spark, so it is not computed once.
    #[test]
    fn never_shares_volatile_arithmetic() -> Result<()> {
        use datafusion::common::config::ConfigOptions;
        use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
        use datafusion::physical_expr::ScalarFunctionExpr;

        let rand = create_udf(
            "rand",
            vec![],
            DataType::Float64,
            Volatility::Volatile,
            Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Float64(Some(0.5))))),
        );
        let schema = schema();
        let random: Arc<dyn PhysicalExpr> = Arc::new(ScalarFunctionExpr::try_new(
            Arc::new(rand),
            vec![],
            &schema,
            Arc::new(ConfigOptions::default()),
        )?);
        let two: Arc<dyn PhysicalExpr> = Arc::new(Literal::new(ScalarValue::Float64(Some(2.0))));
        let doubled = || -> Result<Arc<dyn PhysicalExpr>> {
            Ok(Arc::new(SparkArithmetic::try_new(
                DecimalOp::Multiply,
                Arc::clone(&random),
                Arc::clone(&two),
                DataType::Float64,
                EvalMode::Legacy,
                &schema,
            )?))
        };
        assert!(shared_subexpressions(&[doubled()?, doubled()?]).is_empty());
        Ok(())
    }

    #[test]
    fn shares_nothing_without_repetition_through_arithmetic() -> Result<()> {
        // Different arithmetic, and a column repeated (nothing to compute).
        let args = vec![discounted()?, column("price", 0), column("price", 0)];
        assert!(shared_subexpressions(&args).is_empty());
        // Behind another kind of expression the repetition is not looked at.
        let cast: Arc<dyn PhysicalExpr> = Arc::new(CastExpr::new(
            discounted()?,
            DataType::Decimal128(38, 4),
            None,
        ));
        assert!(shared_subexpressions(&[discounted()?, cast]).is_empty());
        Ok(())
    }
}
