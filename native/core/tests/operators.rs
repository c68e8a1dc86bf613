//! Limit with offset, top-k sorts and Expand, end to end.

mod common;

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use ballista_spark_proto as pb;
use common::*;
use datafusion::common::Result;

fn int_batches(values: Vec<Vec<Option<i64>>>) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
    values
        .into_iter()
        .map(|v| {
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(v))]).unwrap()
        })
        .collect()
}

fn a_field() -> Vec<pb::Field> {
    vec![field("a", ty(pb::TypeId::Int64))]
}

fn limit(limit: u64, offset: u64) -> Result<Vec<String>> {
    // 0..10 in three batches.
    let batches = int_batches(vec![
        (0..4).map(Some).collect(),
        (4..7).map(Some).collect(),
        (7..10).map(Some).collect(),
    ]);
    let root = node(pb::plan_node::Kind::Limit(Box::new(pb::Limit {
        input: Some(Box::new(input(0, a_field()))),
        limit,
        offset,
    })));
    Ok(rows(&run(&plan(root, a_field()), vec![source(batches)])?))
}

#[test]
fn limit_skips_offset_then_takes_limit() -> Result<()> {
    assert_eq!(limit(3, 0)?, vec!["0", "1", "2"]);
    // Across a batch boundary.
    assert_eq!(limit(3, 2)?, vec!["2", "3", "4"]);
    assert_eq!(limit(4, 5)?, vec!["5", "6", "7", "8"]);
    assert_eq!(limit(100, 8)?, vec!["8", "9"]);
    assert!(limit(3, 10)?.is_empty());
    assert!(limit(0, 0)?.is_empty());
    Ok(())
}

fn top_k(ascending: bool, nulls_first: bool, fetch: Option<u64>) -> Result<Vec<String>> {
    let batches = int_batches(vec![
        vec![Some(5), Some(3), None],
        vec![Some(1), Some(4), Some(2)],
    ]);
    let root = node(pb::plan_node::Kind::Sort(Box::new(pb::Sort {
        input: Some(Box::new(input(0, a_field()))),
        order: vec![pb::SortOrder {
            expr: Some(col(0, ty(pb::TypeId::Int64))),
            ascending,
            nulls_first,
        }],
        fetch,
    })));
    Ok(rows(&run(&plan(root, a_field()), vec![source(batches)])?))
}

#[test]
fn sort_with_fetch_keeps_the_first_rows_of_the_order() -> Result<()> {
    assert_eq!(top_k(true, false, Some(3))?, vec!["1", "2", "3"]);
    assert_eq!(top_k(false, true, Some(2))?, vec!["null", "5"]);
    assert_eq!(top_k(true, true, Some(1))?, vec!["null"]);
    assert_eq!(top_k(true, false, Some(10))?.len(), 6);
    assert!(top_k(true, false, Some(0))?.is_empty());
    assert_eq!(
        top_k(false, false, None)?,
        vec!["5", "4", "3", "2", "1", "null"]
    );
    Ok(())
}

#[test]
fn expand_emits_every_projection_of_every_batch() -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Utf8, true),
    ]));
    let batch = |a: Vec<i64>, b: Vec<&str>| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(a)),
                Arc::new(StringArray::from(b)),
            ],
        )
        .unwrap()
    };
    let batches = vec![batch(vec![1, 2], vec!["x", "y"]), batch(vec![3], vec!["z"])];
    let in_fields = vec![
        field("a", ty(pb::TypeId::Int64)),
        field("b", ty(pb::TypeId::String)),
    ];
    let out_fields = vec![
        field("a", ty(pb::TypeId::Int64)),
        field("b", ty(pb::TypeId::String)),
        field("gid", ty(pb::TypeId::Int32)),
    ];
    // GROUPING SETS ((a, b), (a)): b is nulled out in the second set.
    let projections = vec![
        pb::ExpandProjection {
            exprs: vec![
                col(0, ty(pb::TypeId::Int64)),
                col(1, ty(pb::TypeId::String)),
                lit(ty(pb::TypeId::Int32), long(0)),
            ],
        },
        pb::ExpandProjection {
            exprs: vec![
                col(0, ty(pb::TypeId::Int64)),
                lit(ty(pb::TypeId::String), None),
                lit(ty(pb::TypeId::Int32), long(1)),
            ],
        },
    ];
    let root = node(pb::plan_node::Kind::Expand(Box::new(pb::Expand {
        input: Some(Box::new(input(0, in_fields.clone()))),
        projections: projections.clone(),
        schema: Some(schema_of(out_fields.clone())),
    })));
    let out = run(&plan(root, out_fields.clone()), vec![source(batches)])?;
    // Per input batch: all rows under projection 0, then all under projection 1.
    assert_eq!(
        rows(&out),
        vec![
            "1,x,0", "2,y,0", "1,null,1", "2,null,1", "3,z,0", "3,null,1"
        ]
    );

    // A projection whose types differ from the schema is a plan error.
    let mut wrong = projections;
    wrong[1].exprs[2] = lit(ty(pb::TypeId::Int64), long(1));
    let root = node(pb::plan_node::Kind::Expand(Box::new(pb::Expand {
        input: Some(Box::new(input(0, in_fields))),
        projections: wrong,
        schema: Some(schema_of(out_fields.clone())),
    })));
    assert!(run(&plan(root, out_fields), vec![source(vec![])]).is_err());
    Ok(())
}

fn schema_of(fields: Vec<pb::Field>) -> pb::Schema {
    common::schema(fields)
}
