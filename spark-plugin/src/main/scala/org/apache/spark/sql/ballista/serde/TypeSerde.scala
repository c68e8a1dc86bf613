package org.apache.spark.sql.ballista.serde

import io.ballista.spark.proto.{DataType => PDataType, Field => PField, Schema => PSchema, TypeId}
import org.apache.spark.sql.catalyst.expressions.Attribute
import org.apache.spark.sql.types._

/** Spark types and schemas as plan messages. */
object TypeSerde {

  def dataType(dt: DataType): PDataType = {
    val b = PDataType.newBuilder()
    dt match {
      case NullType => b.setId(TypeId.TYPE_ID_NULL)
      case BooleanType => b.setId(TypeId.TYPE_ID_BOOLEAN)
      case ByteType => b.setId(TypeId.TYPE_ID_INT8)
      case ShortType => b.setId(TypeId.TYPE_ID_INT16)
      case IntegerType => b.setId(TypeId.TYPE_ID_INT32)
      case LongType => b.setId(TypeId.TYPE_ID_INT64)
      case FloatType => b.setId(TypeId.TYPE_ID_FLOAT32)
      case DoubleType => b.setId(TypeId.TYPE_ID_FLOAT64)
      case d: DecimalType if d.scale >= 0 =>
        b.setId(TypeId.TYPE_ID_DECIMAL).setPrecision(d.precision).setScale(d.scale)
      case StringType => b.setId(TypeId.TYPE_ID_STRING)
      case BinaryType => b.setId(TypeId.TYPE_ID_BINARY)
      case DateType => b.setId(TypeId.TYPE_ID_DATE)
      case TimestampType => b.setId(TypeId.TYPE_ID_TIMESTAMP)
      case TimestampNTZType => b.setId(TypeId.TYPE_ID_TIMESTAMP_NTZ)
      case other => NotNative(s"data type ${other.simpleString} is not supported natively")
    }
    b.build()
  }

  def field(name: String, dt: DataType, nullable: Boolean): PField =
    PField.newBuilder().setName(name).setDataType(dataType(dt)).setNullable(nullable).build()

  /** Unique column names: Spark's expression ids tell apart equal attribute names. */
  def columnName(attr: Attribute): String = s"${attr.name}#${attr.exprId.id}"

  def schema(attrs: Seq[Attribute]): PSchema = {
    val b = PSchema.newBuilder()
    attrs.foreach(a => b.addFields(field(columnName(a), a.dataType, a.nullable)))
    b.build()
  }

  def schema(struct: StructType): PSchema = {
    val b = PSchema.newBuilder()
    struct.fields.foreach(f => b.addFields(field(f.name, f.dataType, f.nullable)))
    b.build()
  }
}
