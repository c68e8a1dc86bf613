package io.ballista.spark

import org.apache.spark.sql.SparkSession
import org.apache.spark.sql.ballista.execution.{BallistaHashJoinExec, BallistaParquetScanExec}
import org.apache.spark.sql.catalyst.expressions.BloomFilterMightContain
import org.apache.spark.sql.catalyst.optimizer.{BuildLeft, BuildRight, BuildSide}
import org.apache.spark.sql.catalyst.plans.{Inner, LeftAnti, LeftSemi}
import org.apache.spark.sql.execution.{ScalarSubquery, SparkPlan}
import org.apache.spark.sql.execution.datasources.{FilePartition, FileScanRDD}
import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

/**
 * Joins, exchanges, limits, unions and expands run natively and by Spark on the same Parquet
 * data (with null keys, duplicate keys and keys without a match): Spark's answer is the
 * expectation.
 */
class OperatorSuite extends AnyFunSuite with BeforeAndAfterAll {

  private lazy val spark: SparkSession = SparkFixture.session

  override def beforeAll(): Unit = {
    val dir = SparkFixture.tempDir("ballista-ops")
    spark.conf.set("spark.ballista.enabled", "false")
    spark
      .sql("""
        SELECT * FROM VALUES
          (1, 'a', 10), (2, 'b', 20), (2, 'b2', 21), (3, 'c', 30), (NULL, 'n', 40),
          (5, 'e', NULL), (6, NULL, 60)
        AS t(k, s, v)""")
      .repartition(3)
      .write
      .parquet(dir.resolve("l.parquet").toString)
    spark
      .sql("""
        SELECT * FROM VALUES
          (2, 'x', 200), (2, 'y', 201), (3, 'z', 300), (4, 'w', 400), (NULL, 'm', 500),
          (6, 'u', 600)
        AS t(k, s, v)""")
      .repartition(2)
      .write
      .parquet(dir.resolve("r.parquet").toString)
    spark
      .sql("SELECT * FROM VALUES (1), (4) AS t(k)")
      .write
      .parquet(dir.resolve("nonull.parquet").toString)
    spark
      .sql("SELECT * FROM VALUES (1), (NULL) AS t(k)")
      .write
      .parquet(dir.resolve("withnull.parquet").toString)
    spark
      .range(0, 5000)
      .selectExpr(
        "id",
        "id % 97 AS g",
        "CAST(id * 7 % 1000 AS DECIMAL(12,2)) AS d",
        "id % 3 AS g3",
        "id % 2 AS g2"
      )
      .repartition(4)
      .write
      .parquet(dir.resolve("big.parquet").toString)
    spark
      .range(0, 2000)
      .selectExpr("id", "CAST(id % 10 AS INT) AS p", "id * 2 AS v")
      .write
      .partitionBy("p")
      .parquet(dir.resolve("fact.parquet").toString)
    spark
      .sql("SELECT id AS p, concat('p', id) AS name FROM range(10)")
      .write
      .parquet(dir.resolve("dim.parquet").toString)
    Seq("l", "r", "nonull", "withnull", "big", "fact", "dim").foreach { t =>
      spark.read.parquet(dir.resolve(s"$t.parquet").toString).createOrReplaceTempView(t)
    }
  }

  override def afterAll(): Unit = {
    spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.unset("spark.sql.join.preferSortMergeJoin")
    spark.conf.unset("spark.sql.adaptive.enabled")
  }

  private def check(sql: String, ordered: Boolean, nativeOperators: String*): Unit = {
    val df = SparkFixture.assertSameAsSpark(spark, sql, ordered)
    val native = SparkFixture.nativeOperatorNames(df)
    nativeOperators.foreach { op =>
      assert(
        native.contains(op),
        s"$op did not run natively for: $sql\n${df.queryExecution.executedPlan}"
      )
    }
  }

  private val joinTypes =
    Seq("INNER", "LEFT OUTER", "RIGHT OUTER", "FULL OUTER", "LEFT SEMI", "LEFT ANTI")

  private def joinQuery(joinType: String, condition: Boolean, hint: String): String = {
    val extra = if (condition) " AND l.v + 150 < r.v" else ""
    val columns = if (joinType.startsWith("LEFT S") || joinType.startsWith("LEFT A")) {
      "l.k, l.s, l.v"
    } else {
      "l.k, l.s, l.v, r.k, r.s, r.v"
    }
    s"SELECT /*+ $hint(r) */ $columns FROM l $joinType JOIN r ON l.k = r.k$extra"
  }

  for {
    hint <- Seq("BROADCAST", "MERGE", "SHUFFLE_HASH")
    joinType <- joinTypes
    condition <- Seq(false, true)
  } {
    val label = if (condition) "with a condition" else "on keys only"
    test(s"$joinType join ($hint) $label") {
      val df = SparkFixture.assertSameAsSpark(spark, joinQuery(joinType, condition, hint), false)
      // Spark follows the hint where it can (it cannot broadcast the outer side, for example).
      val sortMerge = hint == "MERGE" || (hint == "BROADCAST" && joinType == "FULL OUTER")
      val expected = if (sortMerge) "BallistaSortMergeJoin" else "BallistaHashJoin"
      val native = SparkFixture.nativeOperatorNames(df)
      assert(native.contains(expected), s"$expected missing: ${df.queryExecution.executedPlan}")
    }
  }

  private def joinOperators(sql: String): Seq[String] = {
    val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
    SparkFixture.nativeOperatorNames(df).filter(n => n.contains("Join") || n == "BallistaSort")
  }

  for (joinType <- joinTypes; condition <- Seq(false, true)) {
    val label = if (condition) "with a condition" else "on keys only"
    test(s"$joinType sort-merge join runs as a hash join without sorts $label") {
      spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
      try {
        // Repartitioned: nothing above the join relies on its order (see the test below).
        val sql = joinQuery(joinType, condition, "MERGE").replace("MERGE(r)", "REPARTITION(3)")
        assert(joinOperators(sql) == Seq("BallistaHashJoin"))
        // The tables swapped (aliases kept): the smaller side is now the left one.
        val swapped = sql.replace(s"FROM l $joinType JOIN r", s"FROM r AS l $joinType JOIN l AS r")
        assert(joinOperators(swapped) == Seq("BallistaHashJoin"))
        // Left as planned when switched off or when the build side is above the limit.
        for (
          (key, value) <- Seq(
            "spark.ballista.join.replaceSortMergeJoin" -> "false",
            "spark.ballista.join.hashJoinMaxBuildBytes" -> "1"
          )
        ) {
          spark.conf.set(key, value)
          try assert(joinOperators(sql).contains("BallistaSortMergeJoin"), s"$key=$value")
          finally spark.conf.unset(key)
        }
      } finally spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")
    }
  }

  for (joinType <- joinTypes) {
    test(s"$joinType sort-merge join becomes a hash join that builds the smaller side") {
      spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
      try {
        val semi = joinType.startsWith("LEFT S") || joinType.startsWith("LEFT A")
        // l (7 rows) against big (5000 rows), l on either side: the native join builds l, also
        // where Spark's own hash join builds only the right side (outer, semi and anti joins).
        val queries = Seq(
          BuildLeft -> (s"SELECT /*+ REPARTITION(3) */ l.k, l.s${if (semi) "" else ", b.id, b.d"} " +
            s"FROM l $joinType JOIN big b ON l.k = b.g"),
          BuildRight -> (s"SELECT /*+ REPARTITION(3) */ b.id, b.d${if (semi) "" else ", l.k, l.s"} " +
            s"FROM big b $joinType JOIN l ON b.g = l.k")
        )
        for ((smallSide, sql) <- queries) {
          val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
          val sides = SparkFixture.operators(df.queryExecution.executedPlan).collect {
            case join: BallistaHashJoinExec => join.buildSide
          }
          assert(sides == Seq(smallSide), s"$sql\n${df.queryExecution.executedPlan}")
        }
      } finally spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")
    }
  }

  test("sort-merge joins stay where the sorted output is relied on, elsewhere become hash joins") {
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    try {
      // The join above reads the first join's output sorted by b1.id without a sort of its
      // own; with the aggregate on top nothing needs either order: both become hash joins.
      val threeWay = "SELECT b1.id, count(*), sum(b2.g), max(b3.d) FROM big b1 " +
        "JOIN big b2 ON b1.id = b2.id JOIN big b3 ON b1.id = b3.id GROUP BY b1.id"
      assert(joinOperators(threeWay) == Seq("BallistaHashJoin", "BallistaHashJoin"))
      // Spark drops a sort within partitions that the sort-merge join's output already
      // satisfies, so that join has to stay and keep its output sorted.
      spark.conf.set("spark.ballista.enabled", "true")
      val sorted = spark
        .table("big")
        .as("b1")
        .join(spark.table("big").as("b2"), "id")
        .select("id", "b1.g", "b2.d")
        .sortWithinPartitions("id")
      val partitions = sorted.rdd.glom().collect()
      assert(partitions.map(_.length).sum == 5000)
      partitions.foreach { rows =>
        val ids = rows.map(_.getLong(0)).toSeq
        assert(ids == ids.sorted, "a partition is not sorted")
      }
      assert(SparkFixture.nativeOperatorNames(sorted).contains("BallistaSortMergeJoin"))
    } finally spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")
  }

  /** Checks `sql` against Spark and its native hash joins' (Spark's, native) build sides. */
  private def assertBuildSides(sql: String, expected: (BuildSide, BuildSide)*): Unit = {
    val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
    val plan = df.queryExecution.executedPlan
    val sides = SparkFixture.operators(plan).collect { case join: BallistaHashJoinExec =>
      (join.buildSide, join.nativeBuildSide)
    }
    assert(sides == expected, plan)
  }

  for (joinType <- Seq("INNER", "LEFT OUTER"); condition <- Seq(false, true)) {
    val label = if (condition) "with a condition" else "on keys only"
    test(s"$joinType broadcast join builds from a much smaller shuffled input $label") {
      val extra = if (condition) " AND b.d + s.v > 30" else ""
      val columns = "s.k, s.s, s.v, b.id, b.d"
      // The shuffled side reads a few rows in each task; the broadcast holds thousands of keys.
      val small = s"""SELECT /*+ BROADCAST(b) */ $columns
        FROM (SELECT * FROM l DISTRIBUTE BY k) s $joinType JOIN big b ON s.k = b.id$extra"""
      assertBuildSides(small, (BuildRight, BuildLeft))
      // The other way round, each task builds from the broadcast, as Spark planned.
      val large = s"""SELECT /*+ BROADCAST(s) */ b.id, b.d, s.k, s.s
        FROM (SELECT * FROM big DISTRIBUTE BY g) b JOIN l s ON s.k = b.id$extra"""
      assertBuildSides(large, (BuildRight, BuildRight))
    }
  }

  test("RIGHT OUTER broadcast join builds from a much smaller shuffled input") {
    // Spark broadcasts the left side of a right outer join; each task keeps its unmatched rows.
    val sql = """SELECT /*+ BROADCAST(b) */ s.k, s.s, s.v, b.id, b.d
      FROM big b RIGHT OUTER JOIN (SELECT * FROM l DISTRIBUTE BY k) s
      ON s.k = b.id AND b.d + s.v > 30"""
    assertBuildSides(sql, (BuildLeft, BuildRight))
  }

  test("semi and anti joins move above the filtering inner joins of their stage") {
    // Spark puts both subqueries right on fact and joins the filtered dim last, as in TPC-H Q21
    // (aggregated like Q21: nothing relies on the order of the joins' output).
    def query(antiKey: String) =
      s"""SELECT /*+ BROADCAST(d) */ d.name, count(*), sum(f.v), max(f.id)
      FROM fact f JOIN dim d ON f.p = d.p
      WHERE d.name IN ('p3', 'p7')
        AND EXISTS (SELECT 1 FROM big b WHERE b.id = f.id AND b.g <> f.p)
        AND NOT EXISTS (SELECT 1 FROM big b WHERE b.id = $antiKey AND b.g3 <> f.p)
      GROUP BY d.name"""

    /** Per native semi or anti join: whether an inner join runs below it, and its build side. */
    def semiJoins(sql: String): Seq[(Boolean, BuildSide)] = {
      val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
      SparkFixture.operators(df.queryExecution.executedPlan).collect {
        case semi: BallistaHashJoinExec if semi.joinType == LeftSemi || semi.joinType == LeftAnti =>
          val innerBelow = SparkFixture.operators(semi.left).exists {
            case join: BallistaHashJoinExec => join.joinType == Inner
            case _ => false
          }
          (innerBelow, semi.buildSide)
      }
    }
    // big is broadcast: the whole join tree is one stage and both move above the dim join.
    assert(semiJoins(query("f.id")).map(_._1) == Seq(true, true))
    spark.conf.set("spark.ballista.join.liftSemiJoins", "false")
    try assert(semiJoins(query("f.id")).map(_._1) == Seq(false, false))
    finally spark.conf.unset("spark.ballista.join.liftSemiJoins")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    try {
      // Shuffled on the same key, both joins share the stage of the dim join and move; each
      // then builds the filtered fact rows rather than big.
      assert(semiJoins(query("f.id")) == Seq((true, BuildLeft), (true, BuildLeft)))
      // Shuffled on different keys, the semi join's stage ends with the exchange the anti join
      // needs: only the anti join shares a stage with the dim join and moves.
      assert(semiJoins(query("f.v")).map(_._1).sorted == Seq(false, true))
    } finally spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")
  }

  test("NOT IN subquery (null-aware anti join) with and without nulls in the subquery") {
    check("SELECT * FROM l WHERE k NOT IN (SELECT k FROM nonull)", ordered = false)
    check("SELECT * FROM l WHERE k NOT IN (SELECT k FROM withnull)", ordered = false)
    check("SELECT * FROM l WHERE k NOT IN (SELECT k FROM nonull WHERE k > 100)", ordered = false)
  }

  test("hash shuffles line up with Spark's partitioning (many partitions, several key types)") {
    check(
      "SELECT g, d, count(*), sum(id) FROM big GROUP BY g, d",
      ordered = false,
      "BallistaShuffleExchange"
    )
    check(
      "SELECT /*+ MERGE(b2) */ b1.id, b2.g FROM big b1 JOIN big b2 ON b1.id = b2.id * 3",
      ordered = false,
      "BallistaSortMergeJoin"
    )
  }

  test("native scans split files into tasks exactly as Spark's scan does") {
    val settings = Map(
      "spark.sql.files.maxPartitionBytes" -> "4096",
      "spark.sql.files.openCostInBytes" -> "512"
    )
    settings.foreach { case (k, v) => spark.conf.set(k, v) }
    try {
      Seq("SELECT id, d FROM big WHERE g > 10", "SELECT * FROM fact WHERE p < 5 AND v > 7")
        .foreach { sql =>
          val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
          val scans = nativeScans(df.queryExecution.executedPlan)
          assert(scans.nonEmpty, sql)
          def splits(partitions: Seq[FilePartition]) = partitions.map { p =>
            p.index -> p.files.toSeq.map(f => (f.filePath, f.start, f.length, f.partitionValues))
          }
          scans.foreach { scan =>
            val spark = scan.original.inputRDD.asInstanceOf[FileScanRDD].filePartitions
            assert(spark.size > 1, s"one split only: $sql")
            assert(splits(scan.filePartitions) == splits(spark), sql)
          }
        }
    } finally settings.keys.foreach(spark.conf.unset)
  }

  test("native scans split files evenly over the slots, at most maxSplitBytes each") {
    val plannedScans = (sql: String) => nativeScans(spark.sql(sql).queryExecution.executedPlan)
    spark.conf.set("spark.sql.files.openCostInBytes", "512")
    try {
      Seq("SELECT id, d FROM big WHERE g > 10", "SELECT * FROM fact WHERE p < 5 AND v > 7")
        .foreach { sql =>
          val files = plannedScans(sql).head.original.selectedPartitions.toSeq.flatMap(_.files)
          val bytes = files.map(_.getLen).sum
          // About a third of the files per split: four splits (a multiple of the 2 slots).
          val cap = (bytes + 512 * files.size) / 3
          spark.conf.set("spark.ballista.scan.maxSplitBytes", cap.toString)
          val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
          val scans = nativeScans(df.queryExecution.executedPlan)
          assert(scans.nonEmpty, sql)
          scans.foreach { scan =>
            val splitBytes = scan.filePartitions.map(_.files.map(_.length).sum)
            assert(splitBytes.sum == bytes, s"every byte read once: $sql")
            // Whole small files pack less evenly (fact: five files in five splits).
            if (sql.contains("big")) assert(splitBytes.size == 4, s"$splitBytes: $sql")
            assert(splitBytes.max <= cap, s"$splitBytes: $sql")
          }
          // Set by the application, Spark's split size is kept.
          spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
          try {
            plannedScans(sql).foreach { scan =>
              val spark = scan.original.inputRDD.asInstanceOf[FileScanRDD].filePartitions
              assert(scan.filePartitions.size == spark.size, sql)
              assert(spark.size > 4, sql)
            }
          } finally spark.conf.unset("spark.sql.files.maxPartitionBytes")
        }
    } finally {
      spark.conf.unset("spark.sql.files.openCostInBytes")
      spark.conf.unset("spark.ballista.scan.maxSplitBytes")
    }
  }

  test("round-robin repartitioning starts each map task where Spark does") {
    // Rows per partition depend only on each task's start and row count, not on row order.
    check(
      "SELECT p, count(*) FROM (SELECT spark_partition_id() AS p " +
        "FROM (SELECT /*+ REPARTITION(7) */ * FROM big)) GROUP BY p",
      ordered = false,
      "BallistaShuffleExchange"
    )
  }

  test("global sort (range exchange), ascending and descending, with nulls") {
    check("SELECT * FROM big ORDER BY d DESC, id", ordered = true, "BallistaShuffleExchange")
    check("SELECT * FROM l ORDER BY v NULLS FIRST, k DESC NULLS LAST", ordered = true)
  }

  test("ORDER BY ... LIMIT (top-k) with offset, and LIMIT") {
    check("SELECT id, d FROM big ORDER BY d DESC, id LIMIT 7", ordered = true)
    check(
      "SELECT id, d FROM big ORDER BY d, id LIMIT 5 OFFSET 3",
      ordered = true,
      "BallistaTakeOrderedAndProject"
    )
    check("SELECT count(*) FROM (SELECT * FROM big LIMIT 17)", ordered = true)
  }

  test("UNION ALL and several DISTINCT aggregates (Expand)") {
    check(
      "SELECT k, v FROM l UNION ALL SELECT k, v FROM r",
      ordered = false,
      "BallistaUnion"
    )
    check(
      "SELECT g3, count(DISTINCT g), count(DISTINCT d) FROM big GROUP BY g3",
      ordered = false,
      "BallistaExpand"
    )
    check(
      "SELECT g3, count(DISTINCT g), count(DISTINCT d), sum(id) FROM big GROUP BY g3",
      ordered = false
    )
    check("SELECT g2, g3, sum(id), count(*) FROM big GROUP BY ROLLUP(g2, g3)", false)
    check("SELECT count(*) FILTER (WHERE g > 50), sum(d) FILTER (WHERE id < 100) FROM big", false)
    check("SELECT count(DISTINCT s) FROM l", ordered = false)
  }

  test("scalar subqueries enter native plans as constants") {
    check(
      "SELECT id FROM big WHERE d > (SELECT avg(d) FROM big) AND g = (SELECT max(k) FROM r)",
      ordered = false,
      "BallistaFilter"
    )
  }

  test("dynamic partition pruning: the native scan reads only the partitions the join needs") {
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try {
      val sql = "SELECT f.id, f.p, d.name FROM fact f JOIN dim d ON f.p = d.p " +
        "WHERE d.name IN ('p3', 'p7')"
      val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
      val scans = SparkFixture
        .operators(df.queryExecution.executedPlan)
        .filter(_.nodeName == "BallistaParquetScan")
        .map(_.simpleString(100))
      assert(scans.exists(_.contains("dynamicpruning")), scans)
      assert(df.count() == 400)
    } finally {
      spark.conf.unset("spark.sql.adaptive.enabled")
    }
  }

  test("runtime Bloom filters: one side's filtered keys prune the other side natively") {
    val settings = Seq(
      "spark.sql.autoBroadcastJoinThreshold" -> "-1",
      "spark.sql.optimizer.runtime.bloomFilter.applicationSideScanSizeThreshold" -> "1"
    )
    settings.foreach { case (key, value) => spark.conf.set(key, value) }
    val ratio = "spark.ballista.runtimeFilter.minScanRatio"
    try {
      // The filtered side keeps ids below 500 whose g3 is 1: every row of big that joins one of
      // them must pass the other side's Bloom filter test (long and string keys).
      for (
        sql <- Seq(
          "SELECT b.id, b.d, s.id FROM big b JOIN big s ON b.id = s.g * 50 " +
            "WHERE s.g3 = 1 AND s.id < 500",
          "SELECT b.id, s.id FROM big b JOIN big s ON concat('k', b.g) = concat('k', s.id) " +
            "WHERE s.g3 = 1 AND s.id < 500"
        )
      ) {
        // Both sides scan the same table: the filter stays only with the ratio lowered to 1.
        spark.conf.set(ratio, "1")
        val df = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
        val tests = runtimeFilterTests(df.queryExecution.executedPlan)
        assert(tests.nonEmpty, s"$sql\n${df.queryExecution.executedPlan}")
        // The subquery that builds the filter aggregates natively too.
        val builders = tests
          .flatMap(_.expressions)
          .flatMap(_.collect { case s: ScalarSubquery => SparkFixture.operators(s.plan) })
          .flatten
          .filter(_.nodeName == "BallistaHashAggregate")
        assert(builders.exists(_.toString.contains("bloom_filter_agg")), builders)

        spark.conf.unset(ratio)
        val dropped = SparkFixture.assertSameAsSpark(spark, sql, ordered = false)
        assert(runtimeFilterTests(dropped.queryExecution.executedPlan).isEmpty)
      }
    } finally (settings.map(_._1) :+ ratio).foreach(spark.conf.unset)
  }

  /** The native Parquet scans of `plan`. */
  private def nativeScans(plan: SparkPlan): Seq[BallistaParquetScanExec] =
    SparkFixture.operators(plan).collect { case s: BallistaParquetScanExec => s }

  /** The native filters of `plan` that test rows against a runtime Bloom filter. */
  private def runtimeFilterTests(plan: SparkPlan): Seq[SparkPlan] =
    SparkFixture.operators(plan).filter { op =>
      op.nodeName == "BallistaFilter" &&
      op.expressions.exists(_.exists(_.isInstanceOf[BloomFilterMightContain]))
    }

  test("joins without adaptive execution") {
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try {
      check(joinQuery("LEFT OUTER", condition = true, "MERGE"), ordered = false)
      check(joinQuery("INNER", condition = false, "BROADCAST"), ordered = false)
      check("SELECT g, count(*) FROM big GROUP BY g ORDER BY g", ordered = true)
    } finally {
      spark.conf.unset("spark.sql.adaptive.enabled")
    }
  }
}
