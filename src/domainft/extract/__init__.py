"""Documents -> section-aware chunks with provenance (file, heading path, offsets, content hash)."""

from .chunks import Chunk, ExtractResult, FileStat, Skipped, read_chunks, write_chunks
from .extractor import (
    extract_for_plan,
    extract_inputs,
    extract_table,
    print_extract_table,
)

__all__ = [
    "Chunk", "ExtractResult", "FileStat", "Skipped", "extract_for_plan", "extract_inputs", "extract_table",
    "print_extract_table", "read_chunks", "write_chunks",
]
