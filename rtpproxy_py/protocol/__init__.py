"""The control protocol without I/O: parse command bytes, format replies."""
