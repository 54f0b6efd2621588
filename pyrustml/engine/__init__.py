"""The engine: libq8 through cffi (_ffi), the kernel wrappers, the thread pool, weights in memory,
KV caches, and the executors of a forward pass (plan). Imports nothing above it but errors."""
