package io.ballista.spark

import org.apache.spark.sql.{DataFrame, SparkSession}
import org.apache.spark.sql.ballista.Fallbacks
import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

/**
 * Sort aggregates (Spark's choice for min/max of strings, and with replaceHashWithSortAgg) run
 * as native hash aggregates whose output keeps the sort aggregate's ordering: compared with
 * Spark on Parquet data with null keys and values.
 */
class AggregateSuite extends AnyFunSuite with BeforeAndAfterAll {

  private lazy val spark: SparkSession = SparkFixture.session

  override def beforeAll(): Unit = {
    val dir = SparkFixture.tempDir("ballista-agg")
    spark.conf.set("spark.ballista.enabled", "false")
    spark
      .sql("""
        SELECT * FROM VALUES
          (1, 'pear', 10), (1, 'apple', 11), (2, 'fig', 20), (2, NULL, 21), (3, NULL, NULL),
          (NULL, 'kiwi', 40), (NULL, 'Zebra', 41), (4, 'éclair', 50), (4, '', 51),
          (5, 'b', 60), (6, 'x', 70), (7, 'y', 80), (8, 'z', 90), (9, 'q', 100)
        AS t(k, s, v)""")
      .repartition(3)
      .write
      .parquet(dir.resolve("t.parquet").toString)
    spark
      .sql("""
        SELECT * FROM VALUES
          (1, 'one'), (2, 'two'), (2, 'deux'), (4, NULL), (NULL, 'none'), (9, 'nine'),
          (10, 'ten')
        AS t(k, s)""")
      .repartition(2)
      .write
      .parquet(dir.resolve("u.parquet").toString)
    spark
      .range(0, 3000)
      .selectExpr("CAST(id % 101 AS INT) AS k", "concat('s', id % 37) AS s", "id AS v")
      .repartition(4)
      .write
      .parquet(dir.resolve("big.parquet").toString)
    Seq("t", "u", "big").foreach { t =>
      spark.read.parquet(dir.resolve(s"$t.parquet").toString).createOrReplaceTempView(t)
    }
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
  }

  override def afterAll(): Unit = {
    spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.unset("spark.sql.execution.replaceHashWithSortAgg")
  }

  /** Operator names of vanilla Spark's executed plan for `sql`. */
  private def sparkOperators(sql: String): Seq[String] = {
    spark.conf.set("spark.ballista.enabled", "false")
    val df = spark.sql(sql)
    df.collect()
    SparkFixture.operators(df.queryExecution.executedPlan).map(_.nodeName)
  }

  /**
   * Checks that Spark plans a sort aggregate for `sql`, that the native run gives Spark's
   * rows, and that every aggregate ran natively.
   */
  private def checkSortAggregate(sql: String, ordered: Boolean = false): DataFrame = {
    val vanilla = sparkOperators(sql)
    assert(vanilla.contains("SortAggregate"), s"Spark did not plan a sort aggregate: $vanilla")
    val df = SparkFixture.assertSameAsSpark(spark, sql, ordered)
    val plan = df.queryExecution.executedPlan
    assert(SparkFixture.nativeOperatorNames(df).contains("BallistaHashAggregate"), s"$plan")
    val fallbacks = Fallbacks.of(plan)
    assert(!fallbacks.exists(_._1.contains("Aggregate")), s"$fallbacks\n$plan")
    assert(!SparkFixture.operators(plan).exists(_.nodeName == "SortAggregate"), s"$plan")
    df
  }

  test("grouped min/max/count of strings") {
    checkSortAggregate(
      "SELECT k, min(s), max(s), count(s), count(*), max(v) FROM t GROUP BY k"
    )
    checkSortAggregate("SELECT max(s) AS m, min(s) FROM t GROUP BY k")
    checkSortAggregate("SELECT s, min(s), count(*) FROM t GROUP BY s")
    checkSortAggregate("SELECT k, min(s), max(s), count(*) FROM big GROUP BY k")
  }

  test("global min/max/count of strings") {
    checkSortAggregate("SELECT min(s), max(s), count(s), count(*) FROM t")
    checkSortAggregate("SELECT min(s), max(s) FROM t WHERE k > 100")
    checkSortAggregate("SELECT min(s), max(s), count(*) FROM big")
  }

  test("the sort aggregate's output ordering feeds a merge join without a sort") {
    Seq(
      "JOIN" -> "a.k, a.m, b.n",
      "LEFT JOIN" -> "a.k, a.m, b.k, b.n",
      "FULL OUTER JOIN" -> "a.k, a.m, b.k, b.n"
    ).foreach { case (join, columns) =>
      Seq("t", "big").foreach { table =>
        val sql = s"""
          SELECT /*+ MERGE(b) */ $columns FROM
            (SELECT k, max(s) AS m FROM $table GROUP BY k) a
            $join (SELECT k, min(s) AS n FROM u GROUP BY k) b ON a.k = b.k"""
        val df = checkSortAggregate(sql)
        val plan = df.queryExecution.executedPlan
        val joins = SparkFixture.operators(plan).filter(_.nodeName.contains("SortMergeJoin"))
        assert(joins.nonEmpty, s"$plan")
        joins.foreach { j =>
          assert(j.nodeName == "BallistaSortMergeJoin", s"$plan")
          // Spark relied on the aggregates' ordering: no sort between them and the join.
          j.children.foreach(c => assert(c.nodeName == "BallistaHashAggregate", s"$plan"))
        }
      }
    }
  }

  test("replaceHashWithSortAgg over a merge join's sorted output") {
    spark.conf.set("spark.sql.execution.replaceHashWithSortAgg", "true")
    try {
      val sql = """
        SELECT k, count(*), sum(v), max(n) FROM (
          SELECT /*+ MERGE(b) */ a.k, a.v, b.s AS n FROM t a JOIN u b ON a.k = b.k)
        GROUP BY k"""
      checkSortAggregate(sql)
      checkSortAggregate(
        """SELECT k, count(*), sum(v) FROM (
          SELECT /*+ MERGE(b) */ a.k, a.v FROM big a JOIN big b ON a.k = b.k AND a.v = b.v)
        GROUP BY k"""
      )
      // Ordered output relies on the aggregate's order (Spark removes the redundant sort).
      checkSortAggregate(sql + " ORDER BY k", ordered = true)
    } finally {
      spark.conf.unset("spark.sql.execution.replaceHashWithSortAgg")
    }
  }
}
