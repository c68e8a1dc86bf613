package io.ballista.spark

import scala.collection.mutable.ArrayBuffer

import io.ballista.spark.jni.NativeEngine
import org.apache.spark.SparkException
import org.apache.spark.scheduler.{SparkListener, SparkListenerTaskEnd}
import org.apache.spark.sql.{Row, SparkSession}
import org.apache.spark.sql.ballista.execution.SparkMemoryBroker
import org.apache.spark.sql.types.StructType
import org.scalatest.BeforeAndAfterAll
import org.scalatest.concurrent.Eventually._
import org.scalatest.funsuite.AnyFunSuite
import org.scalatest.time.{Seconds, Span}

/**
 * Native memory under Spark's memory manager, in an application of its own with a tiny off-heap
 * pool: heavy queries still finish by spilling, and every byte goes back when tasks end.
 */
class MemorySuite extends AnyFunSuite with BeforeAndAfterAll {

  /**
   * Small enough that sorts and aggregations over TPC-H's larger tables spill at the tests'
   * scale factor; joins are sort-merge joins (no broadcasts), so that every join sorts.
   */
  private val OffHeapSize = "2m"

  private val heavyQueries = Seq(9, 18, 21)

  private var spark: SparkSession = _

  /** Vanilla Spark's answers, from the shared application: Spark's own operators need more. */
  private var expected: Map[Int, (StructType, Seq[Row])] = Map.empty

  override def beforeAll(): Unit = {
    val shared = SparkFixture.session
    Tpch.register(shared)
    expected = heavyQueries.map { q =>
      val df = SparkFixture.vanilla(shared, Tpch.query(q))
      q -> (df.schema, df.collect().toSeq)
    }.toMap
    SparkFixture.stop()
    spark = SparkFixture
      .builder("ballista")
      .config("spark.memory.offHeap.enabled", "true")
      .config("spark.memory.offHeap.size", OffHeapSize)
      .config("spark.sql.autoBroadcastJoinThreshold", "-1")
      // The joins stay sort-merge joins, whose sorts and buffers are what spills here (small
      // measured joins would otherwise become hash joins, which hold their build side).
      .config("spark.ballista.join.replaceSortMergeJoin", "false")
      .config("spark.ballista.batchSize", "1024")
      .getOrCreate()
    Tpch.register(spark)
  }

  override def afterAll(): Unit = SparkFixture.stop()

  /** Disk bytes spilled by the tasks that end while `body` runs. */
  private def spilledDuring(body: => Unit): Long = {
    val spills = ArrayBuffer[Long]()
    val listener = new SparkListener {
      override def onTaskEnd(end: SparkListenerTaskEnd): Unit =
        spills.synchronized(spills += Option(end.taskMetrics).map(_.diskBytesSpilled).getOrElse(0L))
    }
    spark.sparkContext.addSparkListener(listener)
    try {
      body
      // Task-end events reach listeners asynchronously.
      Thread.sleep(2000)
    } finally spark.sparkContext.removeSparkListener(listener)
    spills.synchronized(spills.sum)
  }

  private def assertReleased(): Unit =
    eventually(timeout(Span(30, Seconds))) {
      assert(NativeEngine.openPlanCount() == 0)
      assert(NativeEngine.grantedMemory() == 0)
      assert(SparkMemoryBroker.offHeapExecutionMemoryUsed == 0)
    }

  for (q <- heavyQueries) {
    test(s"TPC-H Q$q with $OffHeapSize of off-heap memory spills and matches Spark") {
      var nativeSpill = 0L
      val spilled = spilledDuring {
        val (schema, rows) = expected(q)
        val df = SparkFixture.assertNativeGives(spark, Tpch.query(q), schema, rows, ordered = true)
        nativeSpill = SparkFixture
          .operators(df.queryExecution.executedPlan)
          .flatMap(_.metrics.get("spillSize"))
          .map(_.value)
          .sum
      }
      info(s"Q$q: native operators spilled $nativeSpill bytes; tasks $spilled bytes to disk")
      assert(nativeSpill > 0, "no native operator spilled")
      assert(spilled >= nativeSpill)
      assertReleased()
    }
  }

  test("memory goes back to Spark after success, failure and cancellation") {
    spark.sql("SELECT l_orderkey, count(*) FROM lineitem GROUP BY l_orderkey").collect()
    assertReleased()

    // Failure: native code holding more than the limit fails the task with a clear error.
    NativeEngine.configureMemory(Array.empty, 1)
    val error =
      try {
        intercept[SparkException] {
          spark.sql("SELECT l_orderkey, count(*) FROM lineitem GROUP BY l_orderkey").collect()
        }
      } finally NativeEngine.configureMemory(Array.empty, 0)
    assert(error.getMessage.contains("spark.ballista.memory.nativeLimit"), error.getMessage)
    assertReleased()

    SparkFixture.cancelWhileNative(
      spark,
      "SELECT count(*) FROM lineitem a JOIN lineitem b ON a.l_returnflag = b.l_returnflag"
    )
    assertReleased()
    assert(spark.sql("SELECT count(*) FROM orders").collect().head.getLong(0) > 0)
  }
}
