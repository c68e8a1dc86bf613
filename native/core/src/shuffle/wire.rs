//! The column types shuffle and broadcast blocks carry.
//!
//! The engine computes Spark's decimals as 128-bit Arrow decimals whatever their precision,
//! but a decimal of up to 18 digits fits 64 bits (Spark's own rows store it as a `long`). Its
//! upper half is only sign bits, which LZ4 still has to scan and the files, the page cache and
//! the network still carry: blocks hold such columns as 64-bit decimals instead, and readers
//! widen them back to the plan's type like any other layout-only difference (see
//! [`crate::execution::conform_output`], where Arrow's cast does it without a check per value).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{
    DECIMAL64_MAX_PRECISION, DataType, Decimal64Type, Decimal128Type, Field, Schema, SchemaRef,
};
use datafusion::common::{Result, exec_err};

/// The type a column of `data_type` travels as.
fn wire_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Decimal128(precision, scale) if *precision <= DECIMAL64_MAX_PRECISION => {
            DataType::Decimal64(*precision, *scale)
        }
        other => other.clone(),
    }
}

/// The schema blocks of batches of `schema` are written with.
pub fn wire_schema(schema: &SchemaRef) -> SchemaRef {
    if schema
        .fields()
        .iter()
        .all(|f| wire_type(f.data_type()) == *f.data_type())
    {
        return Arc::clone(schema);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(wire_type(f.data_type())))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` in the types of `wire` (its [`wire_schema`]). A decimal outside its precision,
/// which no Spark expression yields, is an error rather than a value cut short.
pub fn to_wire(batch: RecordBatch, wire: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema_ref() == wire {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(wire.fields())
        .map(|(column, field)| narrow(column, field.data_type()))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(wire),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

fn narrow(column: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    match (column.data_type(), to) {
        (DataType::Decimal128(_, _), DataType::Decimal64(precision, scale)) => {
            let narrowed = column
                .as_primitive::<Decimal128Type>()
                .try_unary::<_, Decimal64Type, _>(|v| i64::try_from(v).map_err(|_| v));
            match narrowed {
                Ok(array) => Ok(Arc::new(
                    array.with_precision_and_scale(*precision, *scale)?,
                )),
                Err(v) => exec_err!("decimal {v} does not fit DECIMAL({precision},{scale})"),
            }
        }
        (from, to) if from == to => Ok(Arc::clone(column)),
        (from, to) => exec_err!("shuffle column of type {from} cannot travel as {to}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int32Array};
    use arrow::compute::cast;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("small", DataType::Decimal128(18, 2), true),
            Field::new("wide", DataType::Decimal128(19, 0), true),
            Field::new("int", DataType::Int32, true),
        ]))
    }

    #[test]
    fn decimals_of_up_to_18_digits_travel_as_64_bits_and_come_back_equal() -> Result<()> {
        let schema = schema();
        let wire = wire_schema(&schema);
        assert_eq!(wire.field(0).data_type(), &DataType::Decimal64(18, 2));
        assert_eq!(wire.field(1).data_type(), &DataType::Decimal128(19, 0));
        assert_eq!(wire.field(2).data_type(), &DataType::Int32);
        let limit = 999_999_999_999_999_999i128;
        let small = Decimal128Array::from(vec![Some(limit), Some(-limit), None, Some(0), Some(-1)])
            .with_precision_and_scale(18, 2)?;
        let wide = Decimal128Array::from(vec![Some(i128::from(u64::MAX)); 5])
            .with_precision_and_scale(19, 0)?;
        let ints = Int32Array::from(vec![Some(1), None, Some(3), Some(4), Some(5)]);
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(small.clone()),
                Arc::new(wide.clone()),
                Arc::new(ints),
            ],
        )?;
        let travelled = to_wire(batch.clone(), &wire)?;
        assert_eq!(travelled.schema(), wire);
        let back = cast(travelled.column(0), &DataType::Decimal128(18, 2))?;
        assert_eq!(back.as_ref(), &small as &dyn Array);
        assert_eq!(travelled.column(1).as_ref(), &wide as &dyn Array);
        Ok(())
    }

    #[test]
    fn a_value_beyond_64_bits_is_an_error_not_a_cut() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "d",
            DataType::Decimal128(18, 0),
            true,
        )]));
        // Not a valid DECIMAL(18,0), but nothing checks that before the shuffle.
        let column = Decimal128Array::from(vec![i128::from(i64::MAX) + 1])
            .with_data_type(DataType::Decimal128(18, 0));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(column)])?;
        let error = to_wire(batch, &wire_schema(&schema))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("does not fit DECIMAL(18,0)"), "{error}");
        Ok(())
    }

    #[test]
    fn schemas_without_such_decimals_are_kept() {
        let schema = Arc::new(Schema::new(vec![Field::new("i", DataType::Int64, true)]));
        assert!(Arc::ptr_eq(&wire_schema(&schema), &schema));
    }
}
