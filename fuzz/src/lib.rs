//! Fuzz targets (in progress).
