package io.ballista.spark.jni;

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.DecimalVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.util.Text;

/** Builds input batches and reads output batches as rows of plain Java values. */
final class TestBatches {
  private TestBatches() {}

  /** A batch of an INT64 column {@code id} and a STRING column {@code name}. */
  static VectorSchemaRoot idsAndNames(BufferAllocator allocator, Long[] ids, String[] names) {
    if (ids.length != names.length) {
      throw new IllegalArgumentException("columns differ in length");
    }
    BigIntVector id =
        new BigIntVector("id", FieldType.nullable(new ArrowType.Int(64, true)), allocator);
    VarCharVector name =
        new VarCharVector("name", FieldType.nullable(ArrowType.Utf8.INSTANCE), allocator);
    id.allocateNew(ids.length);
    name.allocateNew(ids.length);
    for (int i = 0; i < ids.length; i++) {
      if (ids[i] == null) {
        id.setNull(i);
      } else {
        id.set(i, ids[i]);
      }
      if (names[i] == null) {
        name.setNull(i);
      } else {
        name.setSafe(i, names[i].getBytes(StandardCharsets.UTF_8));
      }
    }
    id.setValueCount(ids.length);
    name.setValueCount(ids.length);
    return new VectorSchemaRoot(Arrays.<FieldVector>asList(id, name));
  }

  /** A batch of one DECIMAL(precision, scale) column {@code d}. */
  static VectorSchemaRoot decimals(
      BufferAllocator allocator, int precision, int scale, BigDecimal... values) {
    DecimalVector d =
        new DecimalVector(
            "d", FieldType.nullable(new ArrowType.Decimal(precision, scale, 128)), allocator);
    d.allocateNew(values.length);
    for (int i = 0; i < values.length; i++) {
      if (values[i] == null) {
        d.setNull(i);
      } else {
        d.set(i, values[i]);
      }
    }
    d.setValueCount(values.length);
    return new VectorSchemaRoot(Arrays.<FieldVector>asList(d));
  }

  /** Copies the rows of a batch into lists of Java values (strings as {@link String}). */
  static List<List<Object>> rows(VectorSchemaRoot root) {
    List<List<Object>> rows = new ArrayList<>();
    for (int r = 0; r < root.getRowCount(); r++) {
      List<Object> row = new ArrayList<>();
      for (FieldVector vector : root.getFieldVectors()) {
        Object value = vector.getObject(r);
        row.add(value instanceof Text ? value.toString() : value);
      }
      rows.add(row);
    }
    return rows;
  }

  /** Reads every remaining batch of a plan, returning all rows. */
  static List<List<Object>> drain(NativePlan plan) {
    List<List<Object>> rows = new ArrayList<>();
    while (plan.hasNext()) {
      rows.addAll(rows(plan.next()));
    }
    return rows;
  }

  static List<Object> row(Object... values) {
    return Arrays.asList(values);
  }
}
