package io.ballista.spark.jni;

import com.google.protobuf.ByteString;
import io.ballista.spark.proto.BinaryExpr;
import io.ballista.spark.proto.BinaryOp;
import io.ballista.spark.proto.BoundReference;
import io.ballista.spark.proto.DataType;
import io.ballista.spark.proto.Expr;
import io.ballista.spark.proto.Field;
import io.ballista.spark.proto.Filter;
import io.ballista.spark.proto.JvmInput;
import io.ballista.spark.proto.Literal;
import io.ballista.spark.proto.NamedExpr;
import io.ballista.spark.proto.Plan;
import io.ballista.spark.proto.PlanNode;
import io.ballista.spark.proto.Projection;
import io.ballista.spark.proto.Schema;
import io.ballista.spark.proto.TypeId;
import java.math.BigDecimal;
import java.util.Arrays;
import java.util.List;

/** Builders for plan protobuf messages, to keep the tests readable. */
final class TestPlans {
  static final DataType INT64 = type(TypeId.TYPE_ID_INT64);
  static final DataType STRING = type(TypeId.TYPE_ID_STRING);
  static final DataType BOOLEAN = type(TypeId.TYPE_ID_BOOLEAN);

  private TestPlans() {}

  static DataType type(TypeId id) {
    return DataType.newBuilder().setId(id).build();
  }

  static DataType decimal(int precision, int scale) {
    return DataType.newBuilder()
        .setId(TypeId.TYPE_ID_DECIMAL)
        .setPrecision(precision)
        .setScale(scale)
        .build();
  }

  static Field field(String name, DataType type) {
    return Field.newBuilder().setName(name).setDataType(type).setNullable(true).build();
  }

  static Schema schema(Field... fields) {
    return Schema.newBuilder().addAllFields(Arrays.asList(fields)).build();
  }

  static Expr column(int index, DataType type) {
    return Expr.newBuilder()
        .setColumn(BoundReference.newBuilder().setIndex(index).setDataType(type).setNullable(true))
        .build();
  }

  static Expr literal(long value) {
    return Expr.newBuilder()
        .setLiteral(Literal.newBuilder().setDataType(INT64).setLongValue(value))
        .build();
  }

  static Expr literal(BigDecimal value, int precision) {
    return Expr.newBuilder()
        .setLiteral(
            Literal.newBuilder()
                .setDataType(decimal(precision, value.scale()))
                .setDecimalValue(ByteString.copyFrom(value.unscaledValue().toByteArray())))
        .build();
  }

  static Expr binary(BinaryOp op, Expr left, Expr right, DataType returnType) {
    return Expr.newBuilder()
        .setBinary(
            BinaryExpr.newBuilder()
                .setOp(op)
                .setLeft(left)
                .setRight(right)
                .setReturnType(returnType))
        .build();
  }

  static NamedExpr named(Expr expr, String name) {
    return NamedExpr.newBuilder().setExpr(expr).setName(name).build();
  }

  static PlanNode jvmInput(int index, Schema schema) {
    return PlanNode.newBuilder()
        .setJvmInput(JvmInput.newBuilder().setIndex(index).setSchema(schema))
        .build();
  }

  static PlanNode filter(PlanNode input, Expr predicate) {
    return PlanNode.newBuilder()
        .setFilter(Filter.newBuilder().setInput(input).setPredicate(predicate))
        .build();
  }

  static PlanNode projection(PlanNode input, NamedExpr... exprs) {
    List<NamedExpr> list = Arrays.asList(exprs);
    return PlanNode.newBuilder()
        .setProjection(Projection.newBuilder().setInput(input).addAllExprs(list))
        .build();
  }

  static Plan plan(PlanNode root, Schema outputSchema) {
    return Plan.newBuilder()
        .setRoot(root)
        .setOutputSchema(outputSchema)
        .setSessionTimezone("UTC")
        .setBatchSize(8192)
        .build();
  }
}
