package io.ballista.examples;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * A Spark job with the Ballista plugin enabled programmatically: the same query with native
 * execution off and on, which must give the same rows.
 */
public final class SparkWithBallista {
  private SparkWithBallista() {}

  public static void main(String[] args) throws Exception {
    Path tempDir = Files.createTempDirectory("ballista-example");
    String dir = tempDir.toString();
    SparkSession spark =
        SparkSession.builder()
            .master("local[2]")
            .appName("ballista-example")
            .config("spark.plugins", "ballista")
            .config("spark.ui.enabled", "false")
            .getOrCreate();
    try {
      spark
          .range(0, 100_000)
          .selectExpr("id", "id % 10 AS k", "CAST(id AS DECIMAL(12,2)) / 7 AS v")
          .write()
          .parquet(dir + "/t");
      spark.read().parquet(dir + "/t").createOrReplaceTempView("t");
      String query = "SELECT k, count(*), sum(v) FROM t GROUP BY k ORDER BY k";

      spark.conf().set("spark.ballista.enabled", "false");
      List<Row> vanilla = spark.sql(query).collectAsList();
      spark.conf().set("spark.ballista.enabled", "true");
      Dataset<Row> nativeResult = spark.sql(query);
      List<Row> ballista = nativeResult.collectAsList();

      boolean nativePlan =
          nativeResult.queryExecution().executedPlan().toString().contains("Ballista");
      System.out.println("spark rows: " + vanilla.size() + ", first " + vanilla.get(0));
      System.out.println("ballista rows: " + ballista.size() + ", first " + ballista.get(0));
      if (!vanilla.equals(ballista) || !nativePlan) {
        throw new IllegalStateException("native result differs or the plan is not native");
      }
      System.out.println("spark job: identical results, native plan");
    } finally {
      spark.stop();
      deleteRecursively(tempDir);
    }
  }

  private static void deleteRecursively(Path dir) throws IOException {
    try (Stream<Path> paths = Files.walk(dir)) {
      for (Path p : paths.sorted(Comparator.reverseOrder()).toArray(Path[]::new)) {
        Files.deleteIfExists(p);
      }
    }
  }
}
