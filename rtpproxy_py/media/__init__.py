"""Media helpers without I/O: RTP headers, codecs, and per-packet features."""
