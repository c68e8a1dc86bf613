package org.apache.spark.sql.ballista.serde

import java.nio.ByteBuffer
import java.util.concurrent.ConcurrentHashMap

import io.ballista.spark.proto.{
  AggregateFunction => PAggregateFunction,
  AggregateFunctionKind,
  BloomFilterShape,
  EvalMode => PEvalMode
}
import org.apache.spark.sql.catalyst.expressions.{Attribute, EvalMode, Expression}
import org.apache.spark.sql.catalyst.expressions.aggregate._
import org.apache.spark.sql.internal.SQLConf
import org.apache.spark.sql.types._

/**
 * Spark aggregate functions as plan messages. The native side keeps Spark's aggregation
 * buffer layout, so the cases accepted here are exactly those whose buffer and result types
 * the native functions reproduce (see the native `aggregates` module).
 */
object AggregateSerde {

  /**
   * One function of a partial (`input` = the rows' attributes) or final (`input` = None)
   * aggregation.
   */
  def toProto(
      expr: AggregateExpression,
      input: Option[Seq[Attribute]],
      conf: SQLConf
  ): PAggregateFunction = {
    // Spark plans a DISTINCT aggregate (one distinct argument) as aggregations grouped by the
    // argument first; the partial and final phases that follow, still marked distinct, see each
    // value once and compute as usual. Several distinct arguments go through Expand.
    if (expr.filter.isDefined && input.isEmpty) NotNative("FILTER in a final aggregation")
    val (kind, arg, mode) = function(expr.aggregateFunction, conf)
    val b = PAggregateFunction
      .newBuilder()
      .setKind(kind)
      .addArgTypes(TypeSerde.dataType(arg.dataType))
      .setResultType(TypeSerde.dataType(expr.aggregateFunction.dataType))
      .setEvalMode(mode)
      .setName(TypeSerde.columnName(expr.resultAttribute))
    expr.aggregateFunction match {
      case bloom: BloomFilterAggregate => b.setBloomFilter(bloomFilterShape(bloom, conf))
      case _ =>
    }
    input.foreach { attrs =>
      b.addArgs(ExprSerde.toProto(arg, attrs))
      expr.filter.foreach(f => b.setFilter(ExprSerde.toProto(f, attrs)))
    }
    b.build()
  }

  private def function(
      f: AggregateFunction,
      conf: SQLConf
  ): (AggregateFunctionKind, Expression, PEvalMode) = f match {
    case s: Sum =>
      val mode = evalMode(s.evalMode)
      s.child.dataType match {
        case _: DecimalType =>
        case ByteType | ShortType | IntegerType | LongType if s.evalMode == EvalMode.LEGACY =>
        case FloatType | DoubleType =>
        case t => NotNative(s"sum over ${t.simpleString} (${s.evalMode}) is not supported natively")
      }
      (AggregateFunctionKind.AGGREGATE_FUNCTION_KIND_SUM, s.child, mode)
    case a: Average =>
      a.child.dataType match {
        case _: DecimalType if !conf.decimalOperationsAllowPrecisionLoss =>
          NotNative("avg over decimals without spark.sql.decimalOperations.allowPrecisionLoss")
        case _: DecimalType | ByteType | ShortType | IntegerType | LongType | FloatType |
            DoubleType =>
        case t => NotNative(s"avg over ${t.simpleString} is not supported natively")
      }
      (AggregateFunctionKind.AGGREGATE_FUNCTION_KIND_AVG, a.child, evalMode(a.evalMode))
    case c: Count =>
      if (c.children.size != 1)
        NotNative("count over several expressions is not supported natively")
      (
        AggregateFunctionKind.AGGREGATE_FUNCTION_KIND_COUNT,
        c.children.head,
        PEvalMode.EVAL_MODE_LEGACY
      )
    case m: Min =>
      (
        AggregateFunctionKind.AGGREGATE_FUNCTION_KIND_MIN,
        minMaxArg(m.child),
        PEvalMode.EVAL_MODE_LEGACY
      )
    case m: Max =>
      (
        AggregateFunctionKind.AGGREGATE_FUNCTION_KIND_MAX,
        minMaxArg(m.child),
        PEvalMode.EVAL_MODE_LEGACY
      )
    // Spark's runtime filters build their Bloom filter over xxhash64 of the join keys.
    case b: BloomFilterAggregate =>
      if (b.child.dataType != LongType) {
        NotNative(s"bloom_filter_agg over ${b.child.dataType.simpleString}")
      }
      (
        AggregateFunctionKind.AGGREGATE_FUNCTION_KIND_BLOOM_FILTER,
        b.child,
        PEvalMode.EVAL_MODE_LEGACY
      )
    case other => NotNative(s"aggregate function ${other.prettyName} is not supported natively")
  }

  /**
   * The shape of the filter Spark's own aggregation would create (the expected items and bits
   * it was planned with, capped by the session's maximums), read from the header of an empty
   * one as Spark serializes it: version, number of hash functions, number of 64-bit words.
   * Remembered by what decides it: an empty filter has all its bits (megabytes), and a query's
   * plans are translated again at every adaptive re-planning.
   */
  private def bloomFilterShape(b: BloomFilterAggregate, conf: SQLConf): BloomFilterShape = {
    val key = (
      b.estimatedNumItemsExpression.eval(),
      b.numBitsExpression.eval(),
      conf.getConf(SQLConf.RUNTIME_BLOOM_FILTER_MAX_NUM_ITEMS),
      conf.getConf(SQLConf.RUNTIME_BLOOM_FILTER_MAX_NUM_BITS)
    )
    bloomFilterShapes.computeIfAbsent(
      key,
      _ => {
        val header = ByteBuffer.wrap(b.serialize(b.createAggregationBuffer()))
        header.getInt()
        BloomFilterShape
          .newBuilder()
          .setNumHashFunctions(header.getInt())
          .setNumWords(header.getInt())
          .build()
      }
    )
  }

  private val bloomFilterShapes = new ConcurrentHashMap[(Any, Any, Long, Long), BloomFilterShape]

  private def minMaxArg(child: Expression): Expression = child.dataType match {
    case BooleanType | ByteType | ShortType | IntegerType | LongType | _: DecimalType | StringType |
        DateType =>
      child
    case t => NotNative(s"min/max over ${t.simpleString} is not supported natively")
  }

  private def evalMode(mode: EvalMode.Value): PEvalMode = mode match {
    case EvalMode.ANSI => PEvalMode.EVAL_MODE_ANSI
    case EvalMode.TRY => PEvalMode.EVAL_MODE_TRY
    case _ => PEvalMode.EVAL_MODE_LEGACY
  }
}
