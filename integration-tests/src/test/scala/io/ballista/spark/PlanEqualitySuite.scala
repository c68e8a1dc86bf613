package io.ballista.spark

import java.util.concurrent.atomic.AtomicInteger

import org.apache.spark.rdd.RDD
import org.apache.spark.sql.ballista.execution.BallistaSortExec
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.{Attribute, AttributeReference}
import org.apache.spark.sql.execution.{LocalTableScanExec, SparkPlan, UnaryExecNode}
import org.apache.spark.sql.types.LongType
import org.scalatest.funsuite.AnyFunSuite

/**
 * Native operators compare the Spark operator they replace without its children (adaptive
 * execution compares whole plans after every query stage): equality stays linear in the
 * plan's depth and still tells different operators apart.
 */
class PlanEqualitySuite extends AnyFunSuite {

  private val column = AttributeReference("k", LongType)()
  private val leaf = LocalTableScanExec(Seq(column), Nil)

  /** `depth` native sorts, each replacing an [[Original]] over the native operator below. */
  private def chain(depth: Int, comparisons: AtomicInteger, label: String = "sort"): SparkPlan =
    (1 to depth).foldLeft(leaf: SparkPlan) { (child, _) =>
      BallistaSortExec(Nil, child, Original(Argument(label, comparisons), child))
    }

  test("equal native plans compare each replaced operator once") {
    val comparisons = new AtomicInteger()
    val depth = 16
    val (left, right) = (chain(depth, comparisons), chain(depth, comparisons))
    assert(left == right)
    assert(left.hashCode == right.hashCode)
    // Compared with its children, each level's operator would be compared 2^level times.
    assert(comparisons.get == depth)
  }

  test("native plans differing in a replaced operator's arguments are not equal") {
    val comparisons = new AtomicInteger()
    assert(chain(4, comparisons) != chain(4, comparisons, "other"))
  }

  test("native plans differing in the replaced operator's class are not equal") {
    val comparisons = new AtomicInteger()
    val child = chain(2, comparisons)
    val sort = BallistaSortExec(Nil, child, Original(Argument("sort", comparisons), child))
    assert(sort != sort.copy(original = OtherOriginal(Argument("sort", comparisons), child)))
  }

  test("the replaced operator's own children do not count, the native children do") {
    val comparisons = new AtomicInteger()
    val child = chain(2, comparisons)
    val argument = Argument("sort", comparisons)
    val sort = BallistaSortExec(Nil, child, Original(argument, child))
    // What adaptive execution leaves behind: `original` still over the children it replaced.
    val staleOriginal = sort.copy(original = Original(argument, leaf))
    assert(sort == staleOriginal)
    assert(sort.hashCode == staleOriginal.hashCode)
    assert(sort != sort.copy(child = leaf))
  }
}

/** An operator argument that counts how often it is compared. */
case class Argument(label: String, comparisons: AtomicInteger) {
  override def equals(other: Any): Boolean = {
    comparisons.incrementAndGet()
    other match {
      case that: Argument => label == that.label
      case _ => false
    }
  }
  override def hashCode: Int = label.hashCode
}

/** A stand-in for the Spark operator a native one replaces. */
case class Original(argument: Argument, child: SparkPlan) extends UnaryExecNode {
  override def output: Seq[Attribute] = child.output
  override protected def doExecute(): RDD[InternalRow] = throw new UnsupportedOperationException
  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)
}

/** Another operator class with the same arguments as [[Original]]. */
case class OtherOriginal(argument: Argument, child: SparkPlan) extends UnaryExecNode {
  override def output: Seq[Attribute] = child.output
  override protected def doExecute(): RDD[InternalRow] = throw new UnsupportedOperationException
  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)
}
