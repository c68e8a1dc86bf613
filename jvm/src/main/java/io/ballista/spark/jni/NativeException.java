package io.ballista.spark.jni;

/**
 * An error raised by the native engine: every native error, and every panic, reaches Java as this
 * exception.
 *
 * <p>Native code throws it by class name ({@code io/ballista/spark/jni/NativeException}) through
 * the {@link #NativeException(String)} constructor, so that constructor must keep its signature.
 */
public class NativeException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /**
   * Creates the exception.
   *
   * @param message the native error's description
   */
  public NativeException(String message) {
    super(message);
  }

  /**
   * Creates the exception with a cause, for errors detected on the Java side of a native call.
   *
   * @param message the error's description
   * @param cause the underlying error
   */
  public NativeException(String message, Throwable cause) {
    super(message, cause);
  }
}
