package io.ballista.client;

import io.ballista.spark.jni.NativeLibrary;

/**
 * The JNI entry points of the client API, implemented by {@code libballista_spark.so}
 * (native/jni/src/client.rs). Every method reports native errors and panics as {@link
 * io.ballista.spark.jni.NativeException}; {@link BallistaContext} turns them into {@link
 * BallistaException}.
 */
final class NativeClient {
  static {
    NativeLibrary.load();
  }

  private NativeClient() {}

  static native long createContext(long memoryLimitBytes, int threads);

  static native void closeContext(long handle);

  static native void registerParquet(long handle, String name, String path);

  static native void registerCsv(long handle, String name, String path, boolean hasHeader);

  static native void registerBatch(long handle, String name, long arrayAddress, long schemaAddress);

  static native void registerStream(long handle, String name, long streamAddress);

  static native void sql(long handle, String query, long streamAddress);

  static native void executePlan(long handle, byte[] plan, long streamAddress);

  static native void cancel(long handle);

  /** Contexts created and not yet closed, for leak checks in tests. */
  static native long openContextCount();

  /** Result streams exported and not yet released, for leak checks in tests. */
  static native long openStreamCount();
}
