package io.ballista.spark

import org.apache.spark.sql.internal.SQLConf

/** Configuration keys of the plugin; all are read per query from the session's SQL conf. */
object BallistaConf {

  /** A boolean key with its default. */
  final case class BooleanEntry(key: String, default: Boolean, doc: String) {
    def get(conf: SQLConf): Boolean =
      Option(conf.getConfString(key, null)).map(_.trim.toBoolean).getOrElse(default)
  }

  /** An integer key with its default. */
  final case class IntEntry(key: String, default: Int, doc: String) {
    def get(conf: SQLConf): Int =
      Option(conf.getConfString(key, null)).map(_.trim.toInt).getOrElse(default)
  }

  val Enabled: BooleanEntry = BooleanEntry(
    "spark.ballista.enabled",
    default = true,
    "Run supported operators natively; false runs everything as vanilla Spark."
  )

  val BatchSize: IntEntry = IntEntry(
    "spark.ballista.batchSize",
    default = 8192,
    "Rows per Arrow batch produced by native operators and by row-to-Arrow conversion."
  )
}
