//! Spark's equi-joins within one task on DataFusion's join operators.
//!
//! The output is always Spark's: the left columns followed by the right columns for inner
//! and outer joins, the left columns only for semi and anti joins, whichever side is built.
//! Extra conditions are bound to Spark's left columns followed by its right columns, which
//! is exactly a DataFusion [`JoinFilter`] over an intermediate schema of both sides once
//! each column is labelled with the side it comes from. Null keys never match
//! ([`NullEquality::NullEqualsNothing`]), as with SQL equality.
//!
//! Every input has one partition (a Spark task reads one partition of each side), so the
//! hash join runs in [`PartitionMode::Partitioned`] on that single partition pair.

use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::{Schema, SchemaRef};
use ballista_spark_proto as pb;
use datafusion::common::{JoinSide, JoinType, NullEquality, Result, plan_err};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::utils::{ColumnIndex, JoinFilter, JoinOn};
use datafusion::physical_plan::joins::{HashJoinExecBuilder, PartitionMode, SortMergeJoinExec};

use crate::expressions::create_physical_expr;
use crate::expressions::normalize::normalize_if_float;

mod not_in;
pub mod shared_build;

pub use not_in::NotInJoinExec;

/// Spark's join type as DataFusion's, with Spark's left input as DataFusion's left.
fn join_type(join_type: i32) -> Result<JoinType> {
    Ok(match pb::JoinType::try_from(join_type) {
        Ok(pb::JoinType::Inner) => JoinType::Inner,
        Ok(pb::JoinType::LeftOuter) => JoinType::Left,
        Ok(pb::JoinType::RightOuter) => JoinType::Right,
        Ok(pb::JoinType::FullOuter) => JoinType::Full,
        Ok(pb::JoinType::LeftSemi) => JoinType::LeftSemi,
        Ok(pb::JoinType::LeftAnti) => JoinType::LeftAnti,
        Err(_) => return plan_err!("unknown join type {join_type}"),
    })
}

/// The equi-join key pairs, each bound to its own side. Float keys are normalized (Spark
/// joins all NaNs with each other and -0.0 with 0.0; its optimizer normally did this
/// already, and normalizing twice is harmless).
fn join_keys(
    left_keys: &[pb::Expr],
    right_keys: &[pb::Expr],
    left_schema: &Schema,
    right_schema: &Schema,
) -> Result<JoinOn> {
    if left_keys.len() != right_keys.len() {
        return plan_err!(
            "{} left join keys but {} right join keys",
            left_keys.len(),
            right_keys.len()
        );
    }
    if left_keys.is_empty() {
        return plan_err!("equi-join without keys");
    }
    left_keys
        .iter()
        .zip(right_keys)
        .map(|(l, r)| {
            let l = normalize_if_float(create_physical_expr(l, left_schema)?, left_schema)?;
            let r = normalize_if_float(create_physical_expr(r, right_schema)?, right_schema)?;
            let (lt, rt) = (l.data_type(left_schema)?, r.data_type(right_schema)?);
            if lt != rt {
                return plan_err!("join keys of different types {lt} and {rt}");
            }
            Ok((l, r))
        })
        .collect()
}

/// The join filter for Spark's `condition`. Its intermediate schema is Spark's left
/// columns followed by Spark's right columns, so the condition binds unchanged; each column
/// is taken from DataFusion's left or right input according to `swapped`.
fn join_filter(
    condition: Option<&pb::Expr>,
    spark_left: &SchemaRef,
    spark_right: &SchemaRef,
    swapped: bool,
) -> Result<Option<JoinFilter>> {
    let Some(condition) = condition else {
        return Ok(None);
    };
    let (left_side, right_side) = if swapped {
        (JoinSide::Right, JoinSide::Left)
    } else {
        (JoinSide::Left, JoinSide::Right)
    };
    let fields: Vec<_> = spark_left
        .fields()
        .iter()
        .chain(spark_right.fields())
        .cloned()
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let column_indices = (0..spark_left.fields().len())
        .map(|index| ColumnIndex {
            index,
            side: left_side,
        })
        .chain((0..spark_right.fields().len()).map(|index| ColumnIndex {
            index,
            side: right_side,
        }))
        .collect();
    let expression = create_physical_expr(condition, &schema)?;
    Ok(Some(JoinFilter::new(expression, column_indices, schema)))
}

/// Spark's hash join. DataFusion builds its hash table from its *left* input, so with
/// Spark's `BUILD_SIDE_RIGHT` the inputs are swapped (and the join type mirrored), and the
/// output columns are put back into Spark's order by the join's own projection.
///
/// A null-aware anti join (`NOT IN`) built from its list (Spark's right input, as Spark
/// always plans it) is a [`NotInJoinExec`]; built from its left input, it is DataFusion's
/// null-aware `LeftAnti`. Either way its semantics are Spark's: a null key in the list gives
/// no rows at all, and left rows with a null key are output only when the list is empty.
pub fn hash_join(
    join: &pb::HashJoin,
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    hash_join_in_mode(join, left, right, PartitionMode::Partitioned)
}

/// Whether Spark's right input is the one `join` builds its hash table from.
fn builds_right(join: &pb::HashJoin) -> Result<bool> {
    Ok(pb::BuildSide::try_from(join.build_side)
        .map_err(|_| datafusion::common::plan_datafusion_err!("unknown build side"))?
        == pb::BuildSide::Right)
}

/// Whether `join` outputs rows of its build side once all its input was probed (the
/// unmatched ones of an outer join, the kept ones of a semi or anti join of that side).
fn output_at_end(join: &pb::HashJoin) -> Result<bool> {
    let spark_type = join_type(join.join_type)?;
    let built = if builds_right(join)? {
        swap_join_type(spark_type)
    } else {
        spark_type
    };
    Ok(matches!(
        built,
        JoinType::Left
            | JoinType::LeftAnti
            | JoinType::LeftSemi
            | JoinType::LeftMark
            | JoinType::Full
    ))
}

/// [`hash_join`] with DataFusion's `mode`: `CollectLeft` shares one build among executions.
fn hash_join_in_mode(
    join: &pb::HashJoin,
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    mode: PartitionMode,
) -> Result<Arc<dyn ExecutionPlan>> {
    let spark_type = join_type(join.join_type)?;
    let (left_schema, right_schema) = (left.schema(), right.schema());
    let on = join_keys(
        &join.left_keys,
        &join.right_keys,
        &left_schema,
        &right_schema,
    )?;
    if join.null_aware {
        if spark_type != JoinType::LeftAnti || on.len() != 1 {
            return plan_err!("a null-aware join must be a left anti join on one key");
        }
        if join.condition.is_some() {
            // DataFusion would apply the condition to matches, which Spark's null-aware
            // anti join (whose only condition is the NOT IN) never has.
            return plan_err!("null-aware anti join with an extra condition");
        }
    }
    let build_right = builds_right(join)?;
    if join.null_aware && build_right {
        let Some((left_key, right_key)) = on.into_iter().next() else {
            return plan_err!("a null-aware join must have one key");
        };
        return Ok(Arc::new(NotInJoinExec::new(
            left, right, left_key, right_key,
        )));
    }
    let swap = build_right;
    let filter = join_filter(join.condition.as_ref(), &left_schema, &right_schema, swap)?;
    let builder = if swap {
        let on = on.into_iter().map(|(l, r)| (r, l)).collect();
        // With the inputs swapped, inner/outer output is right ++ left: project back.
        let projection = output_has_both_sides(spark_type).then(|| {
            let (nl, nr) = (left_schema.fields().len(), right_schema.fields().len());
            (nr..nr + nl).chain(0..nr).collect::<Vec<_>>()
        });
        HashJoinExecBuilder::new(right, left, on, swap_join_type(spark_type))
            .with_projection(projection)
    } else {
        HashJoinExecBuilder::new(left, right, on, spark_type)
    };
    builder
        .with_filter(filter)
        .with_partition_mode(mode)
        .with_null_equality(NullEquality::NullEqualsNothing)
        .with_null_aware(join.null_aware)
        .build_exec()
}

/// Spark's sort-merge join: both inputs arrive sorted by their keys (Spark plans the sorts),
/// ascending with nulls first, which is what DataFusion's merge expects when told so.
pub fn sort_merge_join(
    join: &pb::SortMergeJoin,
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let spark_type = join_type(join.join_type)?;
    let (left_schema, right_schema) = (left.schema(), right.schema());
    let on = join_keys(
        &join.left_keys,
        &join.right_keys,
        &left_schema,
        &right_schema,
    )?;
    let filter = join_filter(join.condition.as_ref(), &left_schema, &right_schema, false)?;
    let sort_options = vec![
        SortOptions {
            descending: false,
            nulls_first: true,
        };
        on.len()
    ];
    Ok(Arc::new(SortMergeJoinExec::try_new(
        left,
        right,
        on,
        filter,
        spark_type,
        sort_options,
        NullEquality::NullEqualsNothing,
    )?))
}

/// Whether the join outputs the columns of both inputs (not a semi or anti join).
fn output_has_both_sides(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
    )
}

/// The join type with the inputs exchanged.
fn swap_join_type(join_type: JoinType) -> JoinType {
    match join_type {
        JoinType::Left => JoinType::Right,
        JoinType::Right => JoinType::Left,
        JoinType::LeftSemi => JoinType::RightSemi,
        JoinType::RightSemi => JoinType::LeftSemi,
        JoinType::LeftAnti => JoinType::RightAnti,
        JoinType::RightAnti => JoinType::LeftAnti,
        JoinType::LeftMark => JoinType::RightMark,
        JoinType::RightMark => JoinType::LeftMark,
        JoinType::Inner | JoinType::Full => join_type,
    }
}
