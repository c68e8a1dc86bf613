package org.apache.spark.sql.ballista.serde

import com.google.protobuf.ByteString
import io.ballista.spark.proto.{
  BinaryExpr,
  BinaryOp,
  BloomFilterMightContain => PBloomFilterMightContain,
  BoundReference => PBound,
  CaseWhen => PCaseWhen,
  Cast => PCast,
  DateArithmetic => PDateArithmetic,
  DateArithmeticOp,
  DatePart => PDatePart,
  DatePartKind,
  EvalMode => PEvalMode,
  Expr,
  InList => PInList,
  Like => PLike,
  Literal => PLiteral,
  MakeDecimal => PMakeDecimal,
  NamedExpr,
  ScalarFunction => PScalarFunction,
  UnaryExpr,
  UnaryOp,
  UnscaledValue => PUnscaledValue,
  WhenThen
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

  /**
   * Set while operators are only checked for support at planning time, when Spark has not run
   * scalar subqueries yet: their values are then stood in for by nulls of their type.
   */
  private val onlyChecking = new scala.util.DynamicVariable[Boolean](false)

  /** Runs `body`, which translates expressions only to see whether they are supported. */
  def checking[T](body: => T): T = onlyChecking.withValue(true)(body)

  /** Whether `check`, run as in [[checking]], finds everything it translates supported. */
  def supported(check: => Unit): Boolean =
    try {
      checking(check)
      true
    } catch {
      case _: NotNative => false
    }

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

    // Spark runs scalar subqueries before the plan that uses them, whose tasks then get the
    // value as a constant.
    case s: org.apache.spark.sql.execution.ScalarSubquery =>
      TypeSerde.dataType(s.dataType)
      val value = if (onlyChecking.value) null else s.eval(null)
      Expr.newBuilder().setLiteral(literal(Literal.create(value, s.dataType))).build()

    // Spark's runtime filter: the Bloom filter comes from a subquery Spark runs before the
    // plan that tests against it (possibly one of several merged into a struct).
    case m: BloomFilterMightContain =>
      if (m.bloomFilterExpression.references.nonEmpty) {
        NotNative("might_contain with a Bloom filter computed per row")
      }
      val filter = if (onlyChecking.value) null else m.bloomFilterExpression.eval(null)
      val b = PBloomFilterMightContain
        .newBuilder()
        .setBloomFilter(Expr.newBuilder().setLiteral(literal(filter, BinaryType)))
        .setValue(translate(m.valueExpression))
      Expr.newBuilder().setBloomFilterMightContain(b).build()
    case x: XxHash64 =>
      if (x.seed != XxHash64DefaultSeed) NotNative(s"xxhash64 with seed ${x.seed}")
      x.children.map(_.dataType).filterNot(xxhash64Type).foreach { t =>
        NotNative(s"xxhash64 of ${t.simpleString} is not supported natively")
      }
      function("xxhash64", x.children, LongType)

    case a: Add => arithmetic(BinaryOp.BINARY_OP_ADD, a.left, a.right, a.dataType, a.evalMode)
    case s: Subtract =>
      arithmetic(BinaryOp.BINARY_OP_SUBTRACT, s.left, s.right, s.dataType, s.evalMode)
    case m: Multiply =>
      arithmetic(BinaryOp.BINARY_OP_MULTIPLY, m.left, m.right, m.dataType, m.evalMode)
    case d: Divide =>
      arithmetic(BinaryOp.BINARY_OP_DIVIDE, d.left, d.right, d.dataType, d.evalMode)
    case r: Remainder =>
      remainder(BinaryOp.BINARY_OP_REMAINDER, r.left, r.right, r.dataType, r.evalMode)
    case p: Pmod => remainder(BinaryOp.BINARY_OP_PMOD, p.left, p.right, p.dataType, p.evalMode)

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

    case m: UnaryMinus if !m.failOnError =>
      m.dataType match {
        case ByteType | ShortType | IntegerType | LongType | FloatType | DoubleType |
            _: DecimalType =>
          unary(UnaryOp.UNARY_OP_NEGATE, m.child)
        case t => NotNative(s"negation of ${t.simpleString}")
      }

    case c: CaseWhen => caseWhen(c.branches, c.elseValue)
    case i: If => caseWhen(Seq(i.predicate -> i.trueValue), Some(i.falseValue))
    case c: Coalesce =>
      caseWhen(c.children.init.map(e => (IsNotNull(e): Expression) -> e), Some(c.children.last))

    case i: In =>
      if (!i.list.forall(_.isInstanceOf[Literal])) NotNative("IN with non-literal items")
      inList(i.value, i.list.map(_.asInstanceOf[Literal]))
    case i: InSet =>
      inList(i.child, i.hset.toSeq.map(v => Literal.create(v, i.child.dataType)))

    case l: Like =>
      (l.right, l.escapeChar) match {
        case (Literal(p: UTF8String, StringType), '\\') if validLikePattern(p.toString) =>
          like(l.left, p.toString)
        case _ => NotNative("LIKE with a non-literal pattern or another escape character")
      }
    case s: StartsWith => like(s.left, literalString(s.right, "startswith") + "%")
    case e: EndsWith => like(e.left, "%" + literalString(e.right, "endswith"))
    case c: Contains => like(c.left, "%" + literalString(c.right, "contains") + "%")

    case y: Year => datePart(y.child, DatePartKind.DATE_PART_KIND_YEAR)
    case m: Month => datePart(m.child, DatePartKind.DATE_PART_KIND_MONTH)
    case d: DayOfMonth => datePart(d.child, DatePartKind.DATE_PART_KIND_DAY)
    case q: Quarter => datePart(q.child, DatePartKind.DATE_PART_KIND_QUARTER)
    case d: DayOfWeek => datePart(d.child, DatePartKind.DATE_PART_KIND_DAY_OF_WEEK)
    case h: Hour => timePart(h.child, DatePartKind.DATE_PART_KIND_HOUR, h.timeZoneId)
    case m: Minute => timePart(m.child, DatePartKind.DATE_PART_KIND_MINUTE, m.timeZoneId)
    case s: Second => timePart(s.child, DatePartKind.DATE_PART_KIND_SECOND, s.timeZoneId)
    // Spark adds and subtracts day numbers as ints, wrapping around (no ANSI check either).
    case d: DateAdd if d.startDate.dataType == DateType =>
      dateArithmetic(DateArithmeticOp.DATE_ARITHMETIC_OP_ADD_DAYS, d.startDate, d.days)
    case d: DateSub if d.startDate.dataType == DateType =>
      dateArithmetic(DateArithmeticOp.DATE_ARITHMETIC_OP_SUB_DAYS, d.startDate, d.days)
    case d: DateDiff =>
      dateArithmetic(DateArithmeticOp.DATE_ARITHMETIC_OP_DIFF_DAYS, d.endDate, d.startDate)

    case s: Substring if s.str.dataType == StringType =>
      function("substring", Seq(s.str, s.pos, s.len), StringType)
    case u: Upper => function("upper", Seq(u.child), StringType)
    case l: Lower => function("lower", Seq(l.child), StringType)
    // Spark's one-argument trims remove spaces only, as these do.
    case t: StringTrim if t.trimStr.isEmpty => function("btrim", Seq(t.srcStr), StringType)
    case t: StringTrimLeft if t.trimStr.isEmpty => function("ltrim", Seq(t.srcStr), StringType)
    case t: StringTrimRight if t.trimStr.isEmpty => function("rtrim", Seq(t.srcStr), StringType)
    case l: Length if l.child.dataType == StringType =>
      function("length", Seq(l.child), IntegerType)
    case c: Concat if c.children.nonEmpty && c.children.forall(_.dataType == StringType) =>
      function("concat", c.children, StringType)
    // Java's and Rust's regular expressions agree on the plain syntax admitted here.
    case r: RLike =>
      r.right match {
        case Literal(p: UTF8String, StringType)
            if p.toString.forall(plainRegexChar) && !p.toString.contains("(?") =>
          function("regexp_like", Seq(r.left, r.right), BooleanType)
        case _ => NotNative("rlike with a non-literal pattern or escapes, classes or flags")
      }

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

  /** The seed of Spark's `xxhash64` function and runtime filters, the one native hash uses. */
  private val XxHash64DefaultSeed = 42L

  /** The types native `xxhash64` hashes exactly as Spark's `XxHash64` does. */
  private def xxhash64Type(t: DataType): Boolean = t match {
    case ByteType | ShortType | IntegerType | LongType | DateType | StringType => true
    case _ => false
  }

  private def caseWhen(
      branches: Seq[(Expression, Expression)],
      elseValue: Option[Expression]
  ): Expr = {
    val b = PCaseWhen.newBuilder()
    branches.foreach { case (when, value) =>
      b.addBranches(WhenThen.newBuilder().setWhen(translate(when)).setThen(translate(value)))
    }
    elseValue.foreach(e => b.setElseExpr(translate(e)))
    Expr.newBuilder().setCaseWhen(b).build()
  }

  private def inList(value: Expression, items: Seq[Literal]): Expr = {
    value.dataType match {
      case FloatType | DoubleType => NotNative("IN over floating point values")
      case _ =>
    }
    val b = PInList.newBuilder().setValue(translate(value))
    items.foreach(item => b.addList(translate(item)))
    Expr.newBuilder().setInList(b).build()
  }

  /** Backslash may only escape `%`, `_` or itself, as Spark requires (or errors). */
  private def validLikePattern(pattern: String): Boolean = {
    var i = 0
    var valid = true
    while (valid && i < pattern.length) {
      if (pattern.charAt(i) == '\\') {
        valid = i + 1 < pattern.length && "%_\\".indexOf(pattern.charAt(i + 1).toInt) >= 0
        i += 2
      } else {
        i += 1
      }
    }
    valid
  }

  private def plainRegexChar(c: Char): Boolean =
    (c < 128 && c.isLetterOrDigit) || " .*+?^$|()-_,:;'\"/#@=!&<>~".contains(c)

  private def literalString(e: Expression, function: String): String = e match {
    case Literal(s: UTF8String, StringType) =>
      // Matched literally: escape LIKE's special characters.
      s.toString.flatMap(c => if (c == '%' || c == '_' || c == '\\') s"\\$c" else c.toString)
    case _ => NotNative(s"$function with a non-literal argument")
  }

  private def like(value: Expression, pattern: String): Expr = {
    if (value.dataType != StringType) NotNative("LIKE over a non-string value")
    val b = PLike
      .newBuilder()
      .setValue(translate(value))
      .setPattern(translate(Literal(UTF8String.fromString(pattern), StringType)))
    Expr.newBuilder().setLike(b).build()
  }

  private def datePart(child: Expression, part: DatePartKind): Expr = {
    if (child.dataType != DateType) NotNative(s"date part of ${child.dataType.simpleString}")
    Expr
      .newBuilder()
      .setDatePart(PDatePart.newBuilder().setChild(translate(child)).setPart(part))
      .build()
  }

  /** A field of a timestamp's local time (in the session time zone for TimestampType). */
  private def timePart(child: Expression, part: DatePartKind, zone: Option[String]): Expr = {
    val timezone = child.dataType match {
      case TimestampType => zoneId(zone)
      case TimestampNTZType => ""
      case t => NotNative(s"time part of ${t.simpleString}")
    }
    val b = PDatePart.newBuilder().setChild(translate(child)).setPart(part).setTimezone(timezone)
    Expr.newBuilder().setDatePart(b).build()
  }

  private def function(name: String, args: Seq[Expression], resultType: DataType): Expr = {
    val b = PScalarFunction.newBuilder().setName(name).setReturnType(TypeSerde.dataType(resultType))
    args.foreach(a => b.addArgs(translate(a)))
    Expr.newBuilder().setScalarFunction(b).build()
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

  /**
   * `%` and `pmod` on integers and floating point outside ANSI mode (where a zero divisor gives
   * null). Decimals stay in Spark (their result type and rounding are not reproduced), as does
   * ANSI mode (division by zero raises).
   */
  private def remainder(
      op: BinaryOp,
      left: Expression,
      right: Expression,
      resultType: DataType,
      mode: EvalMode.Value
  ): Expr = {
    val supportedType =
      isIntegral(resultType) || resultType == DoubleType || resultType == FloatType
    if (left.dataType != resultType || right.dataType != resultType || !supportedType) {
      NotNative(
        s"${if (op == BinaryOp.BINARY_OP_PMOD) "pmod" else "%"} on " +
          s"${left.dataType.simpleString} and ${right.dataType.simpleString} giving " +
          s"${resultType.simpleString} is not supported natively"
      )
    }
    if (mode != EvalMode.LEGACY) {
      NotNative(s"% and pmod in $mode mode are not supported natively")
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

  /**
   * The casts whose native evaluation is exactly Spark's in `mode` (mirrors the native side's
   * `cast::conversion`). Not native: floating point to string and to decimal (Spark goes
   * through JDK 17's `Double.toString`, whose digits are not always the shortest), string to
   * floating point and to timestamp, timestamp to string, decimal to string, and casts from
   * strings or that may overflow in ANSI and TRY modes (error and null cases not reproduced).
   */
  def isSupportedCast(from: DataType, to: DataType, mode: EvalMode.Value): Boolean = {
    val legacy = mode == EvalMode.LEGACY
    def integral(t: DataType) = isIntegral(t)
    def width(t: DataType) = t.defaultSize
    (from, to) match {
      case (f, t) if f == t => true
      case (NullType, _) => true
      case (
            ByteType | ShortType | IntegerType | LongType | _: DecimalType | BooleanType,
            _: DecimalType
          ) =>
        true
      case (f, t) if integral(f) && integral(t) => true
      case (f, FloatType | DoubleType) if integral(f) => true
      case (FloatType, DoubleType) => true
      case (DoubleType, FloatType) => legacy
      case (FloatType | DoubleType, t) if integral(t) => legacy
      case (_: DecimalType, t) if integral(t) => legacy
      case (_: DecimalType, FloatType | DoubleType) => true
      case (BooleanType, t) if integral(t) || t == FloatType || t == DoubleType => true
      case (f, BooleanType)
          if integral(f) || f == FloatType || f == DoubleType || f.isInstanceOf[DecimalType] =>
        true
      case (f, StringType) if integral(f) || f == BooleanType || f == DateType => true
      case (StringType, t) if integral(t) => legacy
      case (StringType, _: DecimalType | BooleanType | DateType) => legacy
      case (DateType, TimestampType | TimestampNTZType) => true
      case (TimestampType | TimestampNTZType, DateType) => true
      case _ => false
    }
  }

  /**
   * A session time zone id as the native side reads it (a region of the tz database, or an
   * offset such as `+08:00`), resolved as Spark does (`DateTimeUtils.getZoneId`).
   */
  private def zoneId(id: Option[String]): String = id match {
    case None => NotNative("an expression needs a time zone that is not set")
    case Some(z) =>
      try {
        java.time.ZoneId.of(z, java.time.ZoneId.SHORT_IDS) match {
          case o: java.time.ZoneOffset => if (o.getTotalSeconds == 0) "UTC" else o.getId
          case r => r.getId
        }
      } catch {
        case _: java.time.DateTimeException => NotNative(s"unknown time zone $z")
      }
  }

  private def cast(c: Cast): Expr = {
    if (!isSupportedCast(c.child.dataType, c.dataType, c.evalMode)) {
      NotNative(
        s"cast from ${c.child.dataType.simpleString} to ${c.dataType.simpleString} " +
          s"(${c.evalMode}) is not supported natively"
      )
    }
    val zone = (c.child.dataType, c.dataType) match {
      case (TimestampType, _) | (_, TimestampType) => zoneId(c.timeZoneId)
      case _ => ""
    }
    val b = PCast
      .newBuilder()
      .setChild(translate(c.child))
      .setTo(TypeSerde.dataType(c.dataType))
      .setEvalMode(evalMode(c.evalMode))
      .setTimezone(zone)
    Expr.newBuilder().setCast(b).build()
  }

  private def dateArithmetic(op: DateArithmeticOp, left: Expression, right: Expression): Expr = {
    val b = PDateArithmetic
      .newBuilder()
      .setOp(op)
      .setLeft(translate(left))
      .setRight(translate(right))
    Expr.newBuilder().setDateArithmetic(b).build()
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
