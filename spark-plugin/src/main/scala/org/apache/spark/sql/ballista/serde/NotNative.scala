package org.apache.spark.sql.ballista.serde

/** Thrown while translating when a construct has no native equivalent; carries the reason. */
final class NotNative(val reason: String) extends Exception(reason, null, false, false)

object NotNative {
  def apply(reason: String): Nothing = throw new NotNative(reason)
}
