//! The Sluice sender node: consumes a pool's outbound topics and delivers over
//! SMTP from its own source IPs within every limit the shaping engine sets.

pub mod offsets;
pub mod route;
pub mod smtp;
