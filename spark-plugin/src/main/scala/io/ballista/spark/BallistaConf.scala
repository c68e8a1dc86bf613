package io.ballista.spark

import org.apache.spark.SparkConf
import org.apache.spark.network.util.JavaUtils
import org.apache.spark.sql.internal.SQLConf

/**
 * Configuration keys of the plugin. Query execution keys are read per query from the session's
 * SQL conf; the UI's keys from the application's SparkConf when the plugin starts.
 */
object BallistaConf {

  /** A boolean key with its default; a value that is not a boolean is an error naming the key. */
  final case class BooleanEntry(key: String, default: Boolean, doc: String) {
    def get(conf: SQLConf): Boolean =
      Option(conf.getConfString(key, null)).map(_.trim.toLowerCase) match {
        case None => default
        case Some("true") => true
        case Some("false") => false
        case Some(other) =>
          throw new IllegalArgumentException(s"$key should be true or false, but was '$other'")
      }
  }

  /**
   * An integer key with its default and least value (positive unless said otherwise); other
   * values are an error naming the key.
   */
  final case class PositiveIntEntry(key: String, default: Int, doc: String, min: Int = 1) {
    def get(conf: SQLConf): Int = parse(Option(conf.getConfString(key, null)))

    def get(conf: SparkConf): Int = parse(conf.getOption(key))

    private def parse(value: Option[String]): Int =
      value.map(_.trim) match {
        case None => default
        case Some(v) =>
          scala.util.Try(v.toInt).toOption.filter(_ >= min).getOrElse {
            val what = if (min == 1) "a positive integer" else s"an integer of at least $min"
            throw new IllegalArgumentException(s"$key should be $what, but was '$v'")
          }
      }
  }

  /** A key whose value is one of `choices` (case-insensitive); others are an error. */
  final case class ChoiceEntry(key: String, default: String, choices: Seq[String], doc: String) {
    def get(conf: SQLConf): String = {
      val v = Option(conf.getConfString(key, null)).map(_.trim.toLowerCase).getOrElse(default)
      if (!choices.contains(v)) {
        throw new IllegalArgumentException(
          s"$key should be one of ${choices.mkString(", ")}, but was '$v'"
        )
      }
      v
    }
  }

  val Enabled: BooleanEntry = BooleanEntry(
    "spark.ballista.enabled",
    default = true,
    "Run supported operators natively; false runs everything as vanilla Spark."
  )

  val BatchSize: PositiveIntEntry = PositiveIntEntry(
    "spark.ballista.batchSize",
    default = 8192,
    "Rows per Arrow batch produced by native operators and by row-to-Arrow conversion."
  )

  val ShuffleCodec: ChoiceEntry = ChoiceEntry(
    "spark.ballista.shuffle.compression.codec",
    default = "lz4",
    Seq("lz4", "zstd", "none"),
    "Compression of the Arrow IPC blocks of native shuffles and broadcasts."
  )

  val ReplaceSortMergeJoin: BooleanEntry = BooleanEntry(
    "spark.ballista.join.replaceSortMergeJoin",
    default = true,
    "Run a sort-merge join as a native hash join, without its sorts, when adaptive execution " +
      "has measured its build side within spark.ballista.join.hashJoinMaxBuildBytes."
  )

  val LiftSemiJoins: BooleanEntry = BooleanEntry(
    "spark.ballista.join.liftSemiJoins",
    default = true,
    "Move semi and anti joins above the inner joins of the same stage that filter their input, " +
      "so that they see only the rows that survive those joins."
  )

  val RuntimeFilterMinScanRatio: PositiveIntEntry = PositiveIntEntry(
    "spark.ballista.runtimeFilter.minScanRatio",
    default = 3,
    "Keep a runtime Bloom filter only where the largest scan it tests is at least this many " +
      "times the largest scan that builds it."
  )

  /**
   * Spark's runtime Bloom filter settings as the plugin sets them (where the application has
   * not): Spark only applies runtime filters to scans of 10 GiB and more, because building and
   * testing them row by row in the JVM costs much of what they save; built and tested
   * natively, they pay off on scans of a few hundred megabytes already. A filter of 2 MiB
   * (twice Spark's default, sized for 2 million keys) keeps false positives rare for the few
   * million keys of a filtered fact table, is probed with 6 hashes per row and fits a core's
   * second-level cache; each stage's plan carries it, and every running task holds a copy,
   * so a larger one costs memory (Spark's largest, 8 MiB with 11 hashes, also cost seconds of
   * cache misses). Which filters
   * stay is then decided by `RuntimeFilterMinScanRatio`.
   */
  val RuntimeFilterSettings: Seq[(String, String)] = Seq(
    "spark.sql.optimizer.runtime.bloomFilter.applicationSideScanSizeThreshold" -> "128m",
    "spark.sql.optimizer.runtime.bloomFilter.creationSideThreshold" -> "1g",
    "spark.sql.optimizer.runtime.bloomFilter.expectedNumItems" -> "2000000",
    "spark.sql.optimizer.runtime.bloomFilter.numBits" -> "16777216"
  )

  val ScanMaxSplitBytes: BytesEntry = BytesEntry(
    "spark.ballista.scan.maxSplitBytes",
    "The most file bytes one task of a native Parquet scan reads. The scan's files are split " +
      "evenly over a multiple of the slots (spark.sql.files.minPartitionNum, or the default " +
      "parallelism), as few as splits of at most this size allow. A native scan streams row " +
      "groups, so its memory does not grow with its split, and fewer tasks spare the cost of " +
      "starting each. 0, or spark.sql.files.maxPartitionBytes set by the application: " +
      "Spark's own splits.",
    default = "1g"
  )

  val HashJoinMaxBuildBytes: BytesEntry = BytesEntry(
    "spark.ballista.join.hashJoinMaxBuildBytes",
    "The largest build-side partition (compressed shuffle bytes) for which a sort-merge join " +
      "becomes a hash join. 0 (default): a quarter of a task's share of off-heap memory."
  )

  val SharedBuildMaxBytes: BytesEntry = BytesEntry(
    "spark.ballista.join.sharedBuildMaxBytes",
    "A native hash join building from a broadcast of at most this size (encoded, as Spark " +
      "reports its data size) builds its hash table once per executor, shared by the tasks " +
      "joining with it the same way, and held outside their memory as Spark holds its " +
      "broadcast relations (dropped 5 s after its last use); larger broadcasts are built " +
      "by each task in its own memory. 0: never shared.",
    default = "64m"
  )

  val SampledBroadcastThreshold: BytesEntry = BytesEntry(
    "spark.ballista.join.sampledBroadcastThreshold",
    "An equi-join side that is a filtered Parquet scan is broadcast when a sample of its rows, " +
      "read natively while the query is planned, puts it at most this size (as Spark sizes " +
      "rows) and at most an eighth of the other side. Spark, without column statistics, sizes " +
      "it as the whole scan and shuffles both sides. 0: no sampling.",
    default = "32m"
  )

  val UiExecutorUpdateInterval: PositiveIntEntry = PositiveIntEntry(
    "spark.ballista.ui.executorUpdateInterval",
    default = 5000,
    "Milliseconds between two reports of an executor's native memory to the Ballista UI tab."
  )

  /** A size in bytes ("512m", "6g"; 0 = none), read from the application's SparkConf. */
  final case class BytesEntry(key: String, doc: String, default: String = "0") {
    def get(conf: SparkConf): Long = parse(conf.get(key, default))

    def get(conf: SQLConf): Long = parse(conf.getConfString(key, default))

    private def parse(value: String): Long = {
      val bytes =
        try JavaUtils.byteStringAsBytes(value.trim)
        catch {
          case e: NumberFormatException =>
            throw new IllegalArgumentException(s"$key should be a size like 6g, ${e.getMessage}")
        }
      if (bytes < 0) throw new IllegalArgumentException(s"$key should not be negative")
      bytes
    }
  }

  val UnsampledRangeMaxBytes: BytesEntry = BytesEntry(
    "spark.ballista.exchange.unsampledRangeMaxBytes",
    "A range exchange (ORDER BY) whose input adaptive execution has measured at most this " +
      "size sends its rows to one partition instead of sampling the input for range bounds, " +
      "a job that computes the input a second time. 0: always sample.",
    default = "16m"
  )

  val SmallFinalSortInOneTask: BooleanEntry = BooleanEntry(
    "spark.ballista.sort.smallFinalSortInOneTask",
    default = true,
    "A query's final ORDER BY over an input of at most " +
      "spark.ballista.exchange.unsampledRangeMaxBytes has no range exchange: one task reads " +
      "that input and sorts it, one stage sooner."
  )

  val NativeMemoryLimit: BytesEntry = BytesEntry(
    "spark.ballista.memory.nativeLimit",
    "The most memory native code of an executor may hold (every allocation counted); a task " +
      "that finds it passed fails with a clear error that Spark can retry. 0 (default): none."
  )

  val FlightPort: PositiveIntEntry = PositiveIntEntry(
    "spark.ballista.shuffle.flight.port",
    default = 0,
    "Port of each executor's Arrow Flight shuffle server; 0 picks a free one.",
    min = 0
  )

  val FlightMaxConcurrentFetches: PositiveIntEntry = PositiveIntEntry(
    "spark.ballista.shuffle.flight.maxConcurrentFetches",
    default = 4,
    "Shuffle blocks a reduce task fetches over Arrow Flight at the same time."
  )

  val FlightMaxBytesInFlight: BytesEntry = BytesEntry(
    "spark.ballista.shuffle.flight.maxBytesInFlight",
    "The most (compressed) shuffle bytes a reduce task has fetched and not yet read.",
    default = "48m"
  )

  val FlightMaxRetries: PositiveIntEntry = PositiveIntEntry(
    "spark.ballista.shuffle.flight.maxRetries",
    default = 3,
    "Retries of a failed Arrow Flight block fetch before the task reports a fetch failure.",
    min = 0
  )

  val FlightReadLocalBlocks: BooleanEntry = BooleanEntry(
    "spark.ballista.shuffle.flight.readLocalBlocks",
    default = true,
    "Read shuffle blocks written by the same executor straight from its files instead of " +
      "fetching them from its own Arrow Flight server."
  )

  val FlightRetryWaitMs: PositiveIntEntry = PositiveIntEntry(
    "spark.ballista.shuffle.flight.retryWaitMs",
    default = 1000,
    "Milliseconds before the first retry of a failed block fetch (doubling with each retry)."
  )
}
