package io.ballista.examples;

import io.ballista.client.BallistaContext;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowReader;

/** A query through Ballista's Java client API, without Spark: SQL over a CSV file. */
public final class JavaApiQuery {
  private JavaApiQuery() {}

  public static void main(String[] args) throws Exception {
    Path csv = Files.createTempFile("ballista-example", ".csv");
    Files.write(
        csv,
        "city,population\nBerlin,3850000\nParis,2100000\nRome,2750000\n"
            .getBytes(StandardCharsets.UTF_8));
    long rows = 0;
    try (BallistaContext context = BallistaContext.create(256L << 20, 2)) {
      context.registerCsv("cities", csv.toString(), true);
      try (ArrowReader reader =
          context.sql(
              "SELECT city, population FROM cities WHERE population > 2500000 ORDER BY city")) {
        while (reader.loadNextBatch()) {
          VectorSchemaRoot batch = reader.getVectorSchemaRoot();
          System.out.print(batch.contentToTSVString());
          rows += batch.getRowCount();
        }
      }
    } finally {
      Files.deleteIfExists(csv);
    }
    if (rows != 2) {
      throw new IllegalStateException("expected 2 rows, got " + rows);
    }
    System.out.println("java api: " + rows + " rows");
  }
}
