package io.ballista.spark

import org.apache.spark.sql.SparkSession
import org.apache.spark.sql.ballista.execution.{
  BallistaBroadcastExchangeExec,
  BallistaShuffleExchangeExec,
  SampledScanRows
}
import org.apache.spark.sql.catalyst.plans.logical.{Filter, LogicalPlan}
import org.apache.spark.sql.catalyst.plans.physical.HashPartitioning
import org.apache.spark.sql.execution.datasources.{HadoopFsRelation, LogicalRelation}
import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

/**
 * A join side that a filter makes small is broadcast once a native sample of the filtered scan
 * says so (`SampledBroadcasts`), where Spark, sizing the side as its whole scan, shuffles both
 * sides; the rows are vanilla Spark's either way.
 */
class SampledBroadcastSuite extends AnyFunSuite with BeforeAndAfterAll {

  private lazy val spark: SparkSession = SparkFixture.session

  private val threshold = "spark.ballista.join.sampledBroadcastThreshold"

  override def beforeAll(): Unit = {
    val dir = SparkFixture.tempDir("ballista-sampled")
    spark.conf.set("spark.ballista.enabled", "false")
    // 200,000 facts over 1000 keys; 100,000 dimension rows in 100 categories, one in a hundred
    // of them in each category. Two files each (one per task of local[2]).
    spark
      .range(0, 200000, 1, 2)
      .selectExpr("id", "id % 1000 AS k", "CAST(id % 977 AS DECIMAL(12,2)) AS v")
      .write
      .parquet(dir.resolve("fact.parquet").toString)
    spark
      .range(0, 100000, 1, 2)
      .selectExpr("id", "id % 100 AS cat", "concat('name-', id) AS name", "id % 3 AS p")
      .write
      .partitionBy("p")
      .parquet(dir.resolve("dim.parquet").toString)
    // Sorted by id in row groups of about 8000 rows.
    spark
      .range(0, 200000, 1, 1)
      .selectExpr("id", "id % 10 AS g")
      .write
      .option("parquet.block.size", "65536")
      .parquet(dir.resolve("sorted.parquet").toString)
    Seq("fact", "dim", "sorted").foreach { t =>
      spark.read.parquet(dir.resolve(s"$t.parquet").toString).createOrReplaceTempView(t)
    }
  }

  override def afterAll(): Unit = {
    Seq(threshold, "spark.sql.autoBroadcastJoinThreshold").foreach(spark.conf.unset)
    spark.conf.set("spark.ballista.enabled", "true")
  }

  /**
   * Checks `sql` against vanilla Spark with `settings`; returns the keys of its native hash
   * shuffles (by column name) and how many native broadcasts it has.
   */
  private def exchanges(sql: String, settings: (String, String)*): (Set[Seq[String]], Int) = {
    settings.foreach { case (k, v) => spark.conf.set(k, v) }
    try {
      val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
      val operators = SparkFixture.operators(df.queryExecution.executedPlan)
      val shuffles = operators.collect { case e: BallistaShuffleExchangeExec =>
        e.outputPartitioning
      }
      val keys = shuffles.collect { case h: HashPartitioning =>
        h.expressions.map(_.references.head.name)
      }
      (keys.toSet, operators.count(_.isInstanceOf[BallistaBroadcastExchangeExec]))
    } finally settings.foreach { case (k, _) => spark.conf.unset(k) }
  }

  // Spark broadcasts nothing above 100 KB here: both tables' files are larger.
  private val sparkThreshold = "spark.sql.autoBroadcastJoinThreshold" -> "100k"

  private val joinSql = """SELECT f.k, d.name, count(*) AS c, sum(f.v) AS s
    FROM fact f JOIN dim d ON f.k = d.id WHERE d.cat = 7 GROUP BY f.k, d.name"""

  // Both join sides shuffled on their keys.
  private val bothShuffled = Set(Seq("k"), Seq("id"))

  test("a join side its filter makes small is broadcast: the large side is not shuffled") {
    // The filter keeps 1000 of 100,000 dimension rows, about 40 KB as Spark sizes rows.
    val sampled = exchanges(joinSql, sparkThreshold, threshold -> "1m")
    assert(sampled == (Set(Seq("k", "name")), 1), "only the aggregation's shuffle is left")
    // Without the sample Spark shuffles both sides (adaptive execution, having measured the
    // dimension's shuffle, may broadcast it after).
    val (unsampled, _) = exchanges(joinSql, sparkThreshold, threshold -> "0")
    assert(bothShuffled.subsetOf(unsampled), unsampled)
    // A sample above the threshold changes nothing either, nor when broadcasts are off.
    assert(bothShuffled.subsetOf(exchanges(joinSql, sparkThreshold, threshold -> "10k")._1))
    val off = exchanges(joinSql, "spark.sql.autoBroadcastJoinThreshold" -> "-1")
    assert(bothShuffled.subsetOf(off._1))
  }

  test("a filter that keeps none of the sampled rows gives no estimate: no broadcast") {
    // Ids 50000 to 50010 lie between the row groups sampled (the inferred filter on f.id also
    // misses fact's samples): the sample says nothing of how many rows there are.
    val sql = """SELECT f.id, s.g FROM fact f JOIN sorted s ON f.id = s.id
      WHERE s.id BETWEEN 50000 AND 50010"""
    // Both sides shuffled (adaptive execution may broadcast one after measuring it).
    val (shuffles, _) = exchanges(sql, sparkThreshold, threshold -> "1m")
    assert(shuffles == Set(Seq("id")), shuffles)
    assert(sample("SELECT * FROM sorted WHERE id BETWEEN 50000 AND 50010").get.passed == 0)
    // Where the samples are, the same filter makes the side small enough.
    val sampled = sql.replace("50000 AND 50010", "0 AND 10")
    assert(exchanges(sampled, sparkThreshold, threshold -> "1m") == ((Set.empty, 1)))
  }

  test("outer, semi and anti joins get a broadcast only of a side they can build from") {
    val small = "(SELECT * FROM dim WHERE cat = 7)"
    // The filtered side is the right one: a left outer, semi or anti join builds from it.
    Seq("LEFT OUTER", "LEFT SEMI", "LEFT ANTI").foreach { joinType =>
      val sql = s"SELECT f.* FROM fact f $joinType JOIN $small d ON f.k = d.id"
      assert(exchanges(sql, sparkThreshold, threshold -> "1m") == (Set.empty, 1), joinType)
    }
    // A right outer join cannot broadcast its right side: both sides are shuffled.
    val rightOuter = s"SELECT f.id, d.name FROM fact f RIGHT OUTER JOIN $small d ON f.k = d.id"
    assert(exchanges(rightOuter, sparkThreshold, threshold -> "1m")._1 == bothShuffled)
  }

  /** The sample of the filter right above the scan of `sql`'s optimized plan. */
  private def sample(sql: String): Option[SampledScanRows.Sample] = {
    spark.conf.set("spark.ballista.enabled", "true")
    val plan: LogicalPlan = spark.sql(sql).queryExecution.optimizedPlan
    val filters = plan.collect { case Filter(condition, relation: LogicalRelation) =>
      (condition, relation)
    }
    assert(filters.size == 1, plan)
    val (condition, relation) = filters.head
    val fs = relation.relation.asInstanceOf[HadoopFsRelation]
    SampledScanRows.sample(spark, fs, relation.output, condition)
  }

  test("the sample counts the table's rows and the rows its filter keeps") {
    val tenth = sample("SELECT * FROM fact WHERE k < 100").get
    // Both files are sampled (no more than the samples), so their footers give every row.
    assert(tenth.tableRows == 200000.0)
    assert(tenth.scanned == 2L * SampledScanRows.RowsPerSample)
    // Rows are in id order, so k < 100 keeps about one in ten of the rows sampled...
    val kept = tenth.passed.toDouble / tenth.scanned
    assert(kept > 0.095 && kept < 0.11, tenth)
    // ...and the estimate errs a little on the large side.
    assert(tenth.upperRows >= 20000 && tenth.upperRows <= 23000, tenth)
    val none = sample("SELECT * FROM fact WHERE k < 0").get
    assert(none.passed == 0 && none.upperRows > 0 && none.upperRows < 100, none)
  }

  test("a filter's sample is taken once per state of the table's files") {
    val path = SparkFixture.tempDir("ballista-sampled-cache").resolve("grown.parquet").toString
    def write(from: Long, to: Long): Unit = {
      spark.conf.set("spark.ballista.enabled", "false")
      spark
        .range(from, to, 1, 1)
        .selectExpr("id", "id % 10 AS g")
        .write
        .mode("append")
        .parquet(path)
      spark.read.parquet(path).createOrReplaceTempView("grown")
    }
    write(0, 10000)
    val first = sample("SELECT * FROM grown WHERE g = 3").get
    assert(first.tableRows == 10000.0)
    // Another query's equal filter (other attribute ids) finds the same sample.
    assert(sample("SELECT id FROM grown WHERE g = 3").get eq first)
    assert(!(sample("SELECT * FROM grown WHERE g = 4").get eq first))
    // One file more: a new sample, which counts its rows.
    write(10000, 15000)
    assert(sample("SELECT * FROM grown WHERE g = 3").get.tableRows == 15000.0)
  }

  test("partition filters prune the files sampled; filters the engine cannot run are not") {
    // Only p = 1's files count: a third of the rows.
    val partition = sample("SELECT * FROM dim WHERE p = 1 AND cat = 7").get
    assert(partition.tableRows == 33333.0, partition)
    assert(partition.passed > 0 && partition.passed < partition.scanned / 50, partition)
    // Only partition filters: nothing to sample (the pruned files' size is Spark's estimate).
    assert(sample("SELECT * FROM dim WHERE p = 1").isEmpty)
    spark.udf.register("is_odd", (x: Long) => x % 2 == 1)
    assert(sample("SELECT * FROM dim WHERE is_odd(cat)").isEmpty)
  }
}
