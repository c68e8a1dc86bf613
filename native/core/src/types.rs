//! Conversions between the plan's types and Arrow's: data types, schemas and literals.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use ballista_spark_proto as pb;
use datafusion::common::{Result, ScalarValue, exec_err, plan_datafusion_err, plan_err};

/// The Arrow type Spark's Arrow conversion uses for a Spark type (what `ArrowUtils` produces,
/// and what Spark's `ArrowColumnVector` reads back).
pub fn arrow_type(data_type: &pb::DataType) -> Result<DataType> {
    use pb::TypeId;
    let id = TypeId::try_from(data_type.id)
        .map_err(|_| plan_datafusion_err!("unknown type id {}", data_type.id))?;
    Ok(match id {
        TypeId::Null => DataType::Null,
        TypeId::Boolean => DataType::Boolean,
        TypeId::Int8 => DataType::Int8,
        TypeId::Int16 => DataType::Int16,
        TypeId::Int32 => DataType::Int32,
        TypeId::Int64 => DataType::Int64,
        TypeId::Float32 => DataType::Float32,
        TypeId::Float64 => DataType::Float64,
        TypeId::Decimal => decimal_type(data_type.precision, data_type.scale)?,
        TypeId::String => DataType::Utf8,
        TypeId::Binary => DataType::Binary,
        TypeId::Date => DataType::Date32,
        TypeId::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        TypeId::TimestampNtz => DataType::Timestamp(TimeUnit::Microsecond, None),
        TypeId::Unspecified => return plan_err!("data type not set"),
    })
}

/// `Decimal128(precision, scale)` after checking Spark's bounds (precision 1..=38, scale
/// 0..=precision).
pub fn decimal_type(precision: i32, scale: i32) -> Result<DataType> {
    if !(1..=38).contains(&precision) || scale < 0 || scale > precision {
        return plan_err!("unsupported decimal({precision}, {scale})");
    }
    Ok(DataType::Decimal128(precision as u8, scale as i8))
}

/// An Arrow schema from the plan's schema.
pub fn arrow_schema(schema: &pb::Schema) -> Result<SchemaRef> {
    let fields = schema
        .fields
        .iter()
        .map(arrow_field)
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// An Arrow field from the plan's field.
pub fn arrow_field(field: &pb::Field) -> Result<Field> {
    let data_type = field
        .data_type
        .as_ref()
        .ok_or_else(|| plan_datafusion_err!("field {} has no type", field.name))?;
    Ok(Field::new(
        &field.name,
        arrow_type(data_type)?,
        field.nullable,
    ))
}

/// The value of a literal as a scalar of the literal's Arrow type.
pub fn literal_value(literal: &pb::Literal) -> Result<ScalarValue> {
    use pb::literal::Value;
    let data_type = arrow_type(
        literal
            .data_type
            .as_ref()
            .ok_or_else(|| plan_datafusion_err!("literal has no type"))?,
    )?;
    let Some(value) = &literal.value else {
        return ScalarValue::try_from(&data_type);
    };
    let scalar = match (&data_type, value) {
        (DataType::Boolean, Value::BoolValue(v)) => ScalarValue::Boolean(Some(*v)),
        (DataType::Int8, Value::LongValue(v)) => ScalarValue::Int8(Some(narrow(*v)?)),
        (DataType::Int16, Value::LongValue(v)) => ScalarValue::Int16(Some(narrow(*v)?)),
        (DataType::Int32, Value::LongValue(v)) => ScalarValue::Int32(Some(narrow(*v)?)),
        (DataType::Int64, Value::LongValue(v)) => ScalarValue::Int64(Some(*v)),
        (DataType::Date32, Value::LongValue(v)) => ScalarValue::Date32(Some(narrow(*v)?)),
        (DataType::Timestamp(_, tz), Value::LongValue(v)) => {
            ScalarValue::TimestampMicrosecond(Some(*v), tz.clone())
        }
        (DataType::Float32, Value::FloatValue(v)) => ScalarValue::Float32(Some(*v)),
        (DataType::Float64, Value::DoubleValue(v)) => ScalarValue::Float64(Some(*v)),
        (DataType::Decimal128(p, s), Value::DecimalValue(bytes)) => {
            ScalarValue::Decimal128(Some(decimal_from_be_bytes(bytes)?), *p, *s)
        }
        (DataType::Utf8, Value::StringValue(v)) => ScalarValue::Utf8(Some(v.clone())),
        (DataType::Binary, Value::BinaryValue(v)) => ScalarValue::Binary(Some(v.clone())),
        (t, v) => return plan_err!("literal value {v:?} does not fit type {t}"),
    };
    Ok(scalar)
}

fn narrow<T: TryFrom<i64>>(v: i64) -> Result<T> {
    T::try_from(v).or_else(|_| plan_err!("literal {v} out of range"))
}

/// An unscaled decimal from big-endian two's complement bytes (Java's
/// `BigInteger.toByteArray()`), at most 16 bytes.
pub fn decimal_from_be_bytes(bytes: &[u8]) -> Result<i128> {
    if bytes.is_empty() || bytes.len() > 16 {
        return exec_err!("decimal literal of {} bytes", bytes.len());
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 16];
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    Ok(i128::from_be_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_bytes_are_sign_extended() {
        assert_eq!(decimal_from_be_bytes(&[0x01, 0x00]).unwrap(), 256);
        assert_eq!(decimal_from_be_bytes(&[0xff]).unwrap(), -1);
        assert_eq!(decimal_from_be_bytes(&[0xfe, 0xd4]).unwrap(), -300);
        assert!(decimal_from_be_bytes(&[]).is_err());
        assert!(decimal_from_be_bytes(&[0; 17]).is_err());
    }

    #[test]
    fn decimal_bounds_follow_spark() {
        assert!(decimal_type(38, 38).is_ok());
        assert!(decimal_type(39, 0).is_err());
        assert!(decimal_type(5, 6).is_err());
        assert!(decimal_type(0, 0).is_err());
    }
}
