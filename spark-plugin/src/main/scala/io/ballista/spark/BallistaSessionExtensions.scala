package io.ballista.spark

import org.apache.spark.sql.SparkSessionExtensions
import org.apache.spark.sql.ballista.{BallistaColumnarRule, PlanTranslator, SampledBroadcasts}

/**
 * Injects the rules that move supported operators into the native engine: as a columnar rule
 * (how every plan, and every adaptive query stage, is prepared for execution) and as a query
 * stage preparation rule, so that adaptive plans show their native operators in EXPLAIN
 * before they run. An optimizer rule, run before Spark's statistics-based ones, broadcasts
 * join sides whose filters make them small ([[SampledBroadcasts]]).
 */
class BallistaSessionExtensions extends (SparkSessionExtensions => Unit) {
  override def apply(extensions: SparkSessionExtensions): Unit = {
    extensions.injectColumnar(session => BallistaColumnarRule(session))
    extensions.injectQueryStagePrepRule(session => PlanTranslator(session))
    extensions.injectPreCBORule(session => SampledBroadcasts(session))
  }
}
