package org.apache.spark.sql.ballista.serde

import com.google.protobuf.ByteString
import io.ballista.spark.proto.{
  BinaryExpr,
  BinaryOp,
  BoundReference => PBound,
  Cast => PCast,
  EvalMode => PEvalMode,
  Expr,
  Literal => PLiteral,
  MakeDecimal => PMakeDecimal,
  NamedExpr,
  UnaryExpr,
  UnaryOp,
  UnscaledValue => PUnscaledValue
}
import org.apache.spark.sql.catalyst.expressions._
import org.apache.spark.sql.catalyst.optimizer.NormalizeNaNAndZero
import org.apache.spark.sql.types._
import org.apache.spark.unsafe.types.UTF8String

/**
 * Spark expressions as plan messages, bound to the columns of the operator's input.
 * Everything not listed here raises [[NotNative]] with the reason.
 */
object ExprSerde {

  /** `expr` bound to `input` (by expression id) and translated. */
  def toProto(expr: Expression, input: Seq[Attribute]): Expr =
    translate(BindReferences.bindReference(expr, AttributeSeq(input)))

  def named(expr: NamedExpression, input: Seq[Attribute]): NamedExpr =
    NamedExpr
      .newBuilder()
      .setExpr(toProto(expr, input))
      .setName(TypeSerde.columnName(expr.toAttribute))
      .build()

  private def translate(expr: Expression): Expr = expr match {
    case b: BoundReference =>
      val ref = PBound
        .newBuilder()
        .setIndex(b.ordinal)
        .setDataType(TypeSerde.dataType(b.dataType))
        .setNullable(b.nullable)
      Expr.newBuilder().setColumn(ref).build()

    case l: Literal => Expr.newBuilder().setLiteral(literal(l)).build()

    case a: Alias => translate(a.child)

    case a: Add => arithmetic(BinaryOp.BINARY_OP_ADD, a.left, a.right, a.dataType, a.evalMode)
    case s: Subtract =>
      arithmetic(BinaryOp.BINARY_OP_SUBTRACT, s.left, s.right, s.dataType, s.evalMode)
    case m: Multiply =>
      arithmetic(BinaryOp.BINARY_OP_MULTIPLY, m.left, m.right, m.dataType, m.evalMode)
    case d: Divide =>
      arithmetic(BinaryOp.BINARY_OP_DIVIDE, d.left, d.right, d.dataType, d.evalMode)

    case c: EqualTo => comparison(BinaryOp.BINARY_OP_EQ, c)
    case c: EqualNullSafe => comparison(BinaryOp.BINARY_OP_EQ_NULL_SAFE, c)
    case c: LessThan => comparison(BinaryOp.BINARY_OP_LT, c)
    case c: LessThanOrEqual => comparison(BinaryOp.BINARY_OP_LT_EQ, c)
    case c: GreaterThan => comparison(BinaryOp.BINARY_OP_GT, c)
    case c: GreaterThanOrEqual => comparison(BinaryOp.BINARY_OP_GT_EQ, c)

    case a: And =>
      binary(BinaryOp.BINARY_OP_AND, a.left, a.right, BooleanType, PEvalMode.EVAL_MODE_LEGACY)
    case o: Or =>
      binary(BinaryOp.BINARY_OP_OR, o.left, o.right, BooleanType, PEvalMode.EVAL_MODE_LEGACY)
    case n: Not => unary(UnaryOp.UNARY_OP_NOT, n.child)
    case n: IsNull => unary(UnaryOp.UNARY_OP_IS_NULL, n.child)
    case n: IsNotNull => unary(UnaryOp.UNARY_OP_IS_NOT_NULL, n.child)

    case c: Cast => cast(c)

    // Spark normalizes floating-point grouping and join keys: all NaNs alike, -0.0 as 0.0.
    case n: NormalizeNaNAndZero => unary(UnaryOp.UNARY_OP_NORMALIZE_NAN_AND_ZERO, n.child)
    case k: KnownFloatingPointNormalized => translate(k.child)

    // Spark's optimizer computes sums and averages of narrow decimals on unscaled longs.
    case u: UnscaledValue =>
      val b = PUnscaledValue.newBuilder().setChild(translate(u.child))
      Expr.newBuilder().setUnscaledValue(b).build()
    case m: MakeDecimal =>
      val b = PMakeDecimal
        .newBuilder()
        .setChild(translate(m.child))
        .setTo(TypeSerde.dataType(m.dataType))
        .setNullOnOverflow(m.nullOnOverflow)
      Expr.newBuilder().setMakeDecimal(b).build()

    case other =>
      NotNative(
        s"expression ${other.prettyName} (${other.getClass.getSimpleName}) is not " +
          "supported natively"
      )
  }

  private def evalMode(mode: EvalMode.Value): PEvalMode = mode match {
    case EvalMode.LEGACY => PEvalMode.EVAL_MODE_LEGACY
    case EvalMode.ANSI => PEvalMode.EVAL_MODE_ANSI
    case EvalMode.TRY => PEvalMode.EVAL_MODE_TRY
  }

  private def arithmetic(
      op: BinaryOp,
      left: Expression,
      right: Expression,
      resultType: DataType,
      mode: EvalMode.Value
  ): Expr = {
    (left.dataType, right.dataType, resultType) match {
      case (_: DecimalType, _: DecimalType, _: DecimalType) =>
      case (l, r, t) if l == r && r == t && (t == DoubleType || t == FloatType) =>
      case (l, r, t)
          if l == r && r == t && isIntegral(t) && op != BinaryOp.BINARY_OP_DIVIDE &&
            mode != EvalMode.TRY =>
      case (l, r, t) =>
        NotNative(
          s"arithmetic on ${l.simpleString} and ${r.simpleString} giving " +
            s"${t.simpleString} (${mode}) is not supported natively"
        )
    }
    binary(op, left, right, resultType, evalMode(mode))
  }

  private def isIntegral(t: DataType): Boolean = t match {
    case ByteType | ShortType | IntegerType | LongType => true
    case _ => false
  }

  private def comparison(op: BinaryOp, c: BinaryComparison): Expr = {
    if (c.left.dataType != c.right.dataType) {
      NotNative(
        s"comparison of ${c.left.dataType.simpleString} with " +
          s"${c.right.dataType.simpleString} is not supported natively"
      )
    }
    c.left.dataType match {
      case _: AtomicType | NullType =>
      case t => NotNative(s"comparison of ${t.simpleString} values is not supported natively")
    }
    binary(op, c.left, c.right, BooleanType, PEvalMode.EVAL_MODE_LEGACY)
  }

  private def binary(
      op: BinaryOp,
      left: Expression,
      right: Expression,
      resultType: DataType,
      mode: PEvalMode
  ): Expr = {
    val b = BinaryExpr
      .newBuilder()
      .setOp(op)
      .setLeft(translate(left))
      .setRight(translate(right))
      .setReturnType(TypeSerde.dataType(resultType))
      .setEvalMode(mode)
    Expr.newBuilder().setBinary(b).build()
  }

  private def unary(op: UnaryOp, child: Expression): Expr =
    Expr.newBuilder().setUnary(UnaryExpr.newBuilder().setOp(op).setChild(translate(child))).build()

  /** The casts whose native evaluation is exactly Spark's (mirrors the native side's list). */
  def isSupportedCast(from: DataType, to: DataType): Boolean = (from, to) match {
    case (f, t) if f == t => true
    case (NullType, _) => true
    case (ByteType | ShortType | IntegerType | LongType | _: DecimalType, _: DecimalType) => true
    case (ByteType, ShortType | IntegerType | LongType) => true
    case (ShortType, IntegerType | LongType) => true
    case (IntegerType, LongType) => true
    case (ByteType | ShortType | IntegerType | LongType, FloatType | DoubleType) => true
    case (FloatType, DoubleType) => true
    case _ => false
  }

  private def cast(c: Cast): Expr = {
    if (!isSupportedCast(c.child.dataType, c.dataType)) {
      NotNative(
        s"cast from ${c.child.dataType.simpleString} to ${c.dataType.simpleString} " +
          "is not supported natively"
      )
    }
    val b = PCast
      .newBuilder()
      .setChild(translate(c.child))
      .setTo(TypeSerde.dataType(c.dataType))
      .setEvalMode(evalMode(c.evalMode))
      .setTimezone(c.timeZoneId.getOrElse(""))
    Expr.newBuilder().setCast(b).build()
  }

  /** A literal value of a Spark type (or null). */
  def literal(value: Any, dataType: DataType): PLiteral = {
    val b = PLiteral.newBuilder().setDataType(TypeSerde.dataType(dataType))
    if (value != null) {
      (dataType, value) match {
        case (BooleanType, v: Boolean) => b.setBoolValue(v)
        case (ByteType, v: Byte) => b.setLongValue(v.toLong)
        case (ShortType, v: Short) => b.setLongValue(v.toLong)
        case (IntegerType | DateType, v: Int) => b.setLongValue(v.toLong)
        case (LongType | TimestampType | TimestampNTZType, v: Long) => b.setLongValue(v)
        case (FloatType, v: Float) => b.setFloatValue(v)
        case (DoubleType, v: Double) => b.setDoubleValue(v)
        case (d: DecimalType, v: Decimal) =>
          val unscaled = v.toJavaBigDecimal.setScale(d.scale).unscaledValue()
          b.setDecimalValue(ByteString.copyFrom(unscaled.toByteArray))
        case (StringType, v: UTF8String) => b.setStringValue(v.toString)
        case (BinaryType, v: Array[Byte]) => b.setBinaryValue(ByteString.copyFrom(v))
        case (t, v) =>
          NotNative(s"literal ${v} of type ${t.simpleString} is not supported natively")
      }
    }
    b.build()
  }

  private def literal(l: Literal): PLiteral = literal(l.value, l.dataType)
}
