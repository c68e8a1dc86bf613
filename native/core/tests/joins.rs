//! Hash and sort-merge joins against hand-checked expectations, for every join type, both
//! build sides, with and without an extra condition; and Spark's null-aware anti join.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{BinaryArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::writer::StreamWriter;
use ballista_spark_core::execution::TaskExecution;
use ballista_spark_core::input::BatchSource;
use ballista_spark_proto as pb;
use common::*;
use datafusion::common::{DataFusionError, Result};

const ALL_JOIN_TYPES: [pb::JoinType; 6] = [
    pb::JoinType::Inner,
    pb::JoinType::LeftOuter,
    pb::JoinType::RightOuter,
    pb::JoinType::FullOuter,
    pb::JoinType::LeftSemi,
    pb::JoinType::LeftAnti,
];

/// Left input (k BIGINT, a STRING), sorted by k ascending, nulls first, in two batches:
/// (null, ln), (1, l1), (2, l2), (2, l2b), (3, l3).
fn left_batches() -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("a", DataType::Utf8, true),
    ]));
    let batch = |k: Vec<Option<i64>>, a: Vec<&str>| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(k)),
                Arc::new(StringArray::from(a)),
            ],
        )
        .unwrap()
    };
    vec![
        batch(vec![None, Some(1), Some(2)], vec!["ln", "l1", "l2"]),
        batch(vec![Some(2), Some(3)], vec!["l2b", "l3"]),
    ]
}

/// Right input (k BIGINT, b BIGINT), sorted by k ascending, nulls first, in two batches:
/// (null, 99), (2, 20), (2, 21), (3, 30), (4, 40).
fn right_batches() -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("b", DataType::Int64, true),
    ]));
    let batch = |k: Vec<Option<i64>>, b: Vec<i64>| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(k)), Arc::new(Int64Array::from(b))],
        )
        .unwrap()
    };
    vec![
        batch(vec![None, Some(2)], vec![99, 20]),
        batch(vec![Some(2), Some(3), Some(4)], vec![21, 30, 40]),
    ]
}

fn left_fields() -> Vec<pb::Field> {
    vec![
        field("k", ty(pb::TypeId::Int64)),
        field("a", ty(pb::TypeId::String)),
    ]
}

fn right_fields() -> Vec<pb::Field> {
    vec![
        field("k", ty(pb::TypeId::Int64)),
        field("b", ty(pb::TypeId::Int64)),
    ]
}

/// `b > 20 AND NOT (a = 'l2b')`, bound to left ++ right (k, a, k, b).
fn condition() -> pb::Expr {
    binary(
        pb::BinaryOp::And,
        binary(
            pb::BinaryOp::Gt,
            col(3, ty(pb::TypeId::Int64)),
            lit(ty(pb::TypeId::Int64), long(20)),
        ),
        not(binary(
            pb::BinaryOp::Eq,
            col(1, ty(pb::TypeId::String)),
            lit(
                ty(pb::TypeId::String),
                Some(pb::literal::Value::StringValue("l2b".into())),
            ),
        )),
    )
}

fn output_fields(join_type: pb::JoinType) -> Vec<pb::Field> {
    let mut fields = left_fields();
    if !matches!(join_type, pb::JoinType::LeftSemi | pb::JoinType::LeftAnti) {
        fields.extend(right_fields());
    }
    fields
}

/// The expected rows, worked out by hand from the inputs above.
fn expected(join_type: pb::JoinType, with_condition: bool) -> Vec<String> {
    use pb::JoinType::*;
    let rows: &[&str] = match (join_type, with_condition) {
        (Inner, false) => &[
            "2,l2,2,20",
            "2,l2,2,21",
            "2,l2b,2,20",
            "2,l2b,2,21",
            "3,l3,3,30",
        ],
        (LeftOuter, false) => &[
            "2,l2,2,20",
            "2,l2,2,21",
            "2,l2b,2,20",
            "2,l2b,2,21",
            "3,l3,3,30",
            "1,l1,null,null",
            "null,ln,null,null",
        ],
        (RightOuter, false) => &[
            "2,l2,2,20",
            "2,l2,2,21",
            "2,l2b,2,20",
            "2,l2b,2,21",
            "3,l3,3,30",
            "null,null,4,40",
            "null,null,null,99",
        ],
        (FullOuter, false) => &[
            "2,l2,2,20",
            "2,l2,2,21",
            "2,l2b,2,20",
            "2,l2b,2,21",
            "3,l3,3,30",
            "1,l1,null,null",
            "null,ln,null,null",
            "null,null,4,40",
            "null,null,null,99",
        ],
        (LeftSemi, false) => &["2,l2", "2,l2b", "3,l3"],
        (LeftAnti, false) => &["1,l1", "null,ln"],
        // Condition: b > 20 AND a <> 'l2b'. Only (l2, 21) and (l3, 30) pass.
        (Inner, true) => &["2,l2,2,21", "3,l3,3,30"],
        (LeftOuter, true) => &[
            "2,l2,2,21",
            "3,l3,3,30",
            "1,l1,null,null",
            "2,l2b,null,null",
            "null,ln,null,null",
        ],
        (RightOuter, true) => &[
            "2,l2,2,21",
            "3,l3,3,30",
            "null,null,2,20",
            "null,null,4,40",
            "null,null,null,99",
        ],
        (FullOuter, true) => &[
            "2,l2,2,21",
            "3,l3,3,30",
            "1,l1,null,null",
            "2,l2b,null,null",
            "null,ln,null,null",
            "null,null,2,20",
            "null,null,4,40",
            "null,null,null,99",
        ],
        (LeftSemi, true) => &["2,l2", "3,l3"],
        (LeftAnti, true) => &["1,l1", "2,l2b", "null,ln"],
    };
    sorted(rows)
}

fn hash_join_node(
    join_type: pb::JoinType,
    build_side: pb::BuildSide,
    condition: Option<pb::Expr>,
    null_aware: bool,
    left_fields: Vec<pb::Field>,
    right_fields: Vec<pb::Field>,
) -> pb::PlanNode {
    node(pb::plan_node::Kind::HashJoin(Box::new(pb::HashJoin {
        left: Some(Box::new(input(0, left_fields))),
        right: Some(Box::new(input(1, right_fields))),
        left_keys: vec![col(0, ty(pb::TypeId::Int64))],
        right_keys: vec![col(0, ty(pb::TypeId::Int64))],
        join_type: join_type as i32,
        build_side: build_side as i32,
        condition,
        null_aware,
    })))
}

fn smj_node(join_type: pb::JoinType, condition: Option<pb::Expr>) -> pb::PlanNode {
    node(pb::plan_node::Kind::SortMergeJoin(Box::new(
        pb::SortMergeJoin {
            left: Some(Box::new(input(0, left_fields()))),
            right: Some(Box::new(input(1, right_fields()))),
            left_keys: vec![col(0, ty(pb::TypeId::Int64))],
            right_keys: vec![col(0, ty(pb::TypeId::Int64))],
            join_type: join_type as i32,
            condition,
        },
    )))
}

fn run_join(root: pb::PlanNode, join_type: pb::JoinType) -> Result<Vec<String>> {
    let out = run(
        &plan(root, output_fields(join_type)),
        vec![source(left_batches()), source(right_batches())],
    )?;
    Ok(sorted_rows(&out))
}

#[test]
fn hash_join_every_type_build_side_and_condition() -> Result<()> {
    for join_type in ALL_JOIN_TYPES {
        for build_side in [pb::BuildSide::Left, pb::BuildSide::Right] {
            for with_condition in [false, true] {
                let root = hash_join_node(
                    join_type,
                    build_side,
                    with_condition.then(condition),
                    false,
                    left_fields(),
                    right_fields(),
                );
                let actual = run_join(root, join_type)?;
                assert_eq!(
                    actual,
                    expected(join_type, with_condition),
                    "{join_type:?} build {build_side:?} condition {with_condition}"
                );
            }
        }
    }
    Ok(())
}

/// `batches` as a broadcast reaches a task: one Arrow IPC stream in a binary column.
fn broadcast_blocks(batches: &[RecordBatch]) -> Vec<RecordBatch> {
    let mut stream = vec![];
    let mut writer = StreamWriter::try_new(&mut stream, &batches[0].schema()).unwrap();
    for batch in batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    drop(writer);
    let schema = Arc::new(Schema::new(vec![Field::new(
        "data",
        DataType::Binary,
        false,
    )]));
    let data = BinaryArray::from_vec(vec![stream.as_slice()]);
    vec![RecordBatch::try_new(schema, vec![Arc::new(data)]).unwrap()]
}

/// A source counting the batches taken from it.
struct CountingSource {
    inner: Arc<dyn BatchSource>,
    taken: Arc<AtomicUsize>,
}

impl BatchSource for CountingSource {
    fn next_batch(&self) -> Result<Option<RecordBatch>> {
        let batch = self.inner.next_batch()?;
        if batch.is_some() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        Ok(batch)
    }
}

#[test]
fn broadcast_hash_table_shared_by_tasks() -> Result<()> {
    use pb::JoinType::*;
    for join_type in ALL_JOIN_TYPES {
        for build_side in [pb::BuildSide::Left, pb::BuildSide::Right] {
            for with_condition in [false, true] {
                let case = format!("{join_type:?} build {build_side:?} condition {with_condition}");
                let build_right = build_side == pb::BuildSide::Right;
                // The broadcast side read as encoded blocks, marked as shared.
                let side = |index: u32, fields: Vec<pb::Field>, build: bool| {
                    if !build {
                        return input(index, fields);
                    }
                    node(pb::plan_node::Kind::IpcReader(Box::new(pb::IpcReader {
                        input: Some(Box::new(input(
                            index,
                            vec![field("data", ty(pb::TypeId::Binary))],
                        ))),
                        schema: Some(schema(fields)),
                        shared_key: format!("test-app/broadcast-{case}"),
                    })))
                };
                let root = node(pb::plan_node::Kind::HashJoin(Box::new(pb::HashJoin {
                    left: Some(Box::new(side(0, left_fields(), !build_right))),
                    right: Some(Box::new(side(1, right_fields(), build_right))),
                    left_keys: vec![col(0, ty(pb::TypeId::Int64))],
                    right_keys: vec![col(0, ty(pb::TypeId::Int64))],
                    join_type: join_type as i32,
                    build_side: build_side as i32,
                    condition: with_condition.then(condition),
                    null_aware: false,
                })));
                // Three tasks, each with its own copy of the broadcast and its own rows.
                let mut broadcast_batches_read = vec![];
                for task in 0..3 {
                    let taken = Arc::new(AtomicUsize::new(0));
                    let (left, right) = (left_batches(), right_batches());
                    let broadcast = |batches: &[RecordBatch]| -> Arc<dyn BatchSource> {
                        Arc::new(CountingSource {
                            inner: source(broadcast_blocks(batches)),
                            taken: Arc::clone(&taken),
                        })
                    };
                    let sources = if build_right {
                        vec![source(left), broadcast(&right)]
                    } else {
                        vec![broadcast(&left), source(right)]
                    };
                    let out = run(&plan(root.clone(), output_fields(join_type)), sources)?;
                    assert_eq!(
                        sorted_rows(&out),
                        expected(join_type, with_condition),
                        "{case}, task {task}"
                    );
                    broadcast_batches_read.push(taken.load(Ordering::Relaxed));
                }
                // Joins that output build rows at their end (the unmatched ones of the kept
                // side, the survivors of a semi or anti join of it) build in every task.
                let shared = match build_side {
                    pb::BuildSide::Left => {
                        !matches!(join_type, LeftOuter | LeftSemi | LeftAnti | FullOuter)
                    }
                    pb::BuildSide::Right => !matches!(join_type, RightOuter | FullOuter),
                };
                let expected_reads = if shared { [1, 0, 0] } else { [1, 1, 1] };
                assert_eq!(broadcast_batches_read, expected_reads, "{case}");
            }
        }
    }
    Ok(())
}

#[test]
fn sort_merge_join_every_type_and_condition() -> Result<()> {
    for join_type in ALL_JOIN_TYPES {
        for with_condition in [false, true] {
            let root = smj_node(join_type, with_condition.then(condition));
            let actual = run_join(root, join_type)?;
            assert_eq!(
                actual,
                expected(join_type, with_condition),
                "{join_type:?} condition {with_condition}"
            );
        }
    }
    Ok(())
}

#[test]
fn inner_join_keeps_spark_column_order_when_building_right() -> Result<()> {
    // Not only the set of rows: every column is where Spark expects it.
    let root = hash_join_node(
        pb::JoinType::Inner,
        pb::BuildSide::Right,
        None,
        false,
        left_fields(),
        right_fields(),
    );
    let out = run(
        &plan(root, output_fields(pb::JoinType::Inner)),
        vec![source(left_batches()), source(right_batches())],
    )?;
    let schema = out[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, vec!["k", "a", "k", "b"]);
    assert_eq!(out[0].column(1).data_type(), &DataType::Utf8);
    Ok(())
}

fn keys_batch(keys: Vec<Option<i64>>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(keys))]).unwrap()
}

/// The plan of `k NOT IN (k of the right input)` over two inputs of one `k` column.
fn not_in_plan(build_side: pb::BuildSide) -> pb::Plan {
    let key_fields = || vec![field("k", ty(pb::TypeId::Int64))];
    let root = hash_join_node(
        pb::JoinType::LeftAnti,
        build_side,
        None,
        true,
        key_fields(),
        key_fields(),
    );
    plan(root, key_fields())
}

/// `left NOT IN right` as Spark's null-aware anti join, under both build sides.
fn not_in(left: Vec<Option<i64>>, right: Vec<Vec<Option<i64>>>) -> Result<Vec<String>> {
    let mut results = vec![];
    for build_side in [pb::BuildSide::Right, pb::BuildSide::Left] {
        let right_batches = right.iter().cloned().map(keys_batch).collect();
        let out = run(
            &not_in_plan(build_side),
            vec![
                source(vec![keys_batch(left.clone())]),
                source(right_batches),
            ],
        )?;
        results.push(sorted_rows(&out));
    }
    assert_eq!(results[0], results[1], "build sides disagree");
    Ok(results.swap_remove(0))
}

#[test]
fn null_aware_anti_join_follows_spark() -> Result<()> {
    let left = vec![Some(1), Some(2), None];
    // No null in the list: rows not in it, and never a null key.
    assert_eq!(
        not_in(left.clone(), vec![vec![Some(2), Some(3)]])?,
        sorted(&["1"])
    );
    // A null anywhere in the list (here in a later batch): no rows at all.
    assert_eq!(
        not_in(left.clone(), vec![vec![Some(3)], vec![None, Some(4)]])?,
        Vec::<String>::new()
    );
    // An empty list: every row, null keys included.
    assert_eq!(not_in(left.clone(), vec![])?, sorted(&["1", "2", "null"]));
    assert_eq!(not_in(left, vec![vec![]])?, sorted(&["1", "2", "null"]));
    // Only a null in the list.
    assert_eq!(
        not_in(vec![Some(1)], vec![vec![None]])?,
        Vec::<String>::new()
    );
    Ok(())
}

/// A left input that fails after its first batch.
struct FailingAfterOneBatch(Mutex<Option<RecordBatch>>);

impl BatchSource for FailingAfterOneBatch {
    fn next_batch(&self) -> Result<Option<RecordBatch>> {
        match self.0.lock().unwrap().take() {
            Some(batch) => Ok(Some(batch)),
            None => Err(DataFusionError::Execution("left input failed".into())),
        }
    }
}

/// Built from its list (as Spark plans `NOT IN`), the join streams its left input: rows come
/// out before the input has ended, instead of the whole input being held in a hash table
/// and returned at the end.
#[test]
fn not_in_built_from_the_list_streams_its_input() -> Result<()> {
    let first = keys_batch((1..=40).map(Some).collect());
    let left: Arc<dyn BatchSource> = Arc::new(FailingAfterOneBatch(Mutex::new(Some(first))));
    let list = source(vec![keys_batch(vec![Some(2), Some(5)])]);
    let mut execution =
        TaskExecution::from_plan(&not_in_plan(pb::BuildSide::Right), vec![left, list], None)?;
    let batch = execution
        .next_batch()?
        .expect("rows of the first batch before the input fails");
    let keys = rows(&[batch]);
    assert!(keys.len() >= 4, "{keys:?}");
    assert!(keys.iter().all(|k| k != "2" && k != "5"), "{keys:?}");
    loop {
        match execution.next_batch() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the input's failure was lost"),
            Err(e) => {
                assert!(e.to_string().contains("left input failed"), "{e}");
                return Ok(());
            }
        }
    }
}

#[test]
fn inconsistent_joins_are_plan_errors() {
    // Null-aware is only for single-key left anti joins.
    let root = hash_join_node(
        pb::JoinType::Inner,
        pb::BuildSide::Right,
        None,
        true,
        left_fields(),
        right_fields(),
    );
    let plan = plan(root, output_fields(pb::JoinType::Inner));
    assert!(run(&plan, vec![source(left_batches()), source(right_batches())]).is_err());
    // Key types must agree.
    let root = node(pb::plan_node::Kind::HashJoin(Box::new(pb::HashJoin {
        left: Some(Box::new(input(0, left_fields()))),
        right: Some(Box::new(input(1, right_fields()))),
        left_keys: vec![col(1, ty(pb::TypeId::String))],
        right_keys: vec![col(0, ty(pb::TypeId::Int64))],
        join_type: pb::JoinType::Inner as i32,
        build_side: pb::BuildSide::Right as i32,
        condition: None,
        null_aware: false,
    })));
    let plan = common::plan(root, output_fields(pb::JoinType::Inner));
    assert!(run(&plan, vec![source(left_batches()), source(right_batches())]).is_err());
}

#[test]
fn not_in_counts_the_compute_of_its_anti_join() -> Result<()> {
    let mut plan = not_in_plan(pb::BuildSide::Right);
    if let Some(root) = plan.root.as_mut() {
        root.metrics_id = 1;
    }
    let left = keys_batch((1..=100_000).map(Some).collect());
    let list = keys_batch((1..=50_000).map(|k| Some(k * 2)).collect());
    let mut execution =
        TaskExecution::from_plan(&plan, vec![source(vec![left]), source(vec![list])], None)?;
    let mut rows = 0;
    while let Some(batch) = execution.next_batch()? {
        rows += batch.num_rows();
    }
    assert_eq!(rows, 50_000);
    let metrics = execution.metrics();
    let join = metrics.nodes.iter().find(|n| n.metrics_id == 1);
    let join = join.expect("metrics of the NOT IN join");
    assert_eq!(join.output_rows, 50_000);
    // Building the hash table of 50,000 keys and probing 100,000 takes well over 100 µs.
    assert!(
        join.elapsed_compute_nanos > 100_000,
        "{} ns",
        join.elapsed_compute_nanos
    );
    Ok(())
}
