/*
 * Runs one SQL query over a CSV or Parquet file with Ballista's C API and prints the result
 * rows, tab-separated, reading the Arrow C stream directly (no Arrow library needed).
 *
 *   query TABLE PATH SQL
 *
 * PATH is registered as table TABLE: as Parquet when it ends in ".parquet", otherwise as CSV
 * with a header line. Prints int64, int32, double, boolean and utf8 columns ("?" for others,
 * "NULL" for nulls). Build (see dev/c-example-test.sh):
 *
 *   cc -I native/jni/include examples/c/query.c -L DIR -lballista_spark -Wl,-rpath,DIR
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ballista.h"

static int is_valid(const struct ArrowArray *column, int64_t row) {
  const uint8_t *validity = (const uint8_t *)column->buffers[0];
  int64_t i = row + column->offset;
  return validity == NULL || (validity[i / 8] >> (i % 8)) & 1;
}

static void print_value(const struct ArrowSchema *type, const struct ArrowArray *column,
                        int64_t row) {
  int64_t i = row + column->offset;
  const char *format = type->format;
  if (!is_valid(column, row)) {
    fputs("NULL", stdout);
  } else if (strcmp(format, "l") == 0) {
    printf("%" PRId64, ((const int64_t *)column->buffers[1])[i]);
  } else if (strcmp(format, "L") == 0) {
    printf("%" PRIu64, ((const uint64_t *)column->buffers[1])[i]);
  } else if (strcmp(format, "i") == 0) {
    printf("%" PRId32, ((const int32_t *)column->buffers[1])[i]);
  } else if (strcmp(format, "g") == 0) {
    printf("%g", ((const double *)column->buffers[1])[i]);
  } else if (strcmp(format, "b") == 0) {
    const uint8_t *bits = (const uint8_t *)column->buffers[1];
    fputs((bits[i / 8] >> (i % 8)) & 1 ? "true" : "false", stdout);
  } else if (strcmp(format, "u") == 0) {
    /* utf8: buffers[1] holds n+1 int32 offsets into the bytes of buffers[2]. */
    const int32_t *offsets = (const int32_t *)column->buffers[1];
    const char *bytes = (const char *)column->buffers[2];
    fwrite(bytes + offsets[i], 1, (size_t)(offsets[i + 1] - offsets[i]), stdout);
  } else {
    fputs("?", stdout);
  }
}

/* Prints the stream's rows; returns 0, or 1 after printing the stream's error. */
static int print_stream(struct ArrowArrayStream *stream) {
  struct ArrowSchema schema;
  if (stream->get_schema(stream, &schema) != 0) {
    fprintf(stderr, "get_schema failed: %s\n", stream->get_last_error(stream));
    return 1;
  }
  /* The header: column names. Batches are struct arrays whose children are the columns. */
  for (int64_t c = 0; c < schema.n_children; c++) {
    printf(c == 0 ? "%s" : "\t%s", schema.children[c]->name);
  }
  putchar('\n');
  int status = 0;
  for (;;) {
    struct ArrowArray batch;
    if (stream->get_next(stream, &batch) != 0) {
      fprintf(stderr, "get_next failed: %s\n", stream->get_last_error(stream));
      status = 1;
      break;
    }
    if (batch.release == NULL) {
      break; /* end of stream */
    }
    for (int64_t row = 0; row < batch.length; row++) {
      for (int64_t c = 0; c < batch.n_children; c++) {
        if (c > 0) putchar('\t');
        print_value(schema.children[c], batch.children[c], row + batch.offset);
      }
      putchar('\n');
    }
    batch.release(&batch);
  }
  schema.release(&schema);
  return status;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s TABLE PATH SQL\n", argv[0]);
    return 2;
  }
  const char *table = argv[1], *path = argv[2], *sql = argv[3];
  BallistaContext *ctx = ballista_context_new(256u << 20, 2);
  if (ctx == NULL) {
    fprintf(stderr, "ballista_context_new: %s\n", ballista_last_error());
    return 1;
  }
  size_t len = strlen(path);
  int parquet = len >= 8 && strcmp(path + len - 8, ".parquet") == 0;
  int rc = parquet ? ballista_register_parquet(ctx, table, path)
                   : ballista_register_csv(ctx, table, path, true);
  if (rc != BALLISTA_OK) {
    fprintf(stderr, "register %s: %s\n", path, ballista_last_error());
    ballista_context_free(ctx);
    return 1;
  }
  struct ArrowArrayStream stream;
  if (ballista_sql(ctx, sql, &stream) != BALLISTA_OK) {
    fprintf(stderr, "ballista_sql: %s\n", ballista_last_error());
    ballista_context_free(ctx);
    return 1;
  }
  int status = print_stream(&stream);
  stream.release(&stream);
  ballista_context_free(ctx);
  return status;
}
