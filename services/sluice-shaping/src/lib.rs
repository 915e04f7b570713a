//! Shaping engine (being written).
