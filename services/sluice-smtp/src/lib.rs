//! The SMTP protocol as Sluice speaks it, in one place: pure parsing and
//! formatting, plus an async line reader over any [`AsyncBufRead`]. No
//! sockets, no policy: each server decides what to accept and what to say,
//! this crate only tells it what arrived.
//!
//! - [`read_line`]: one line, bounded (RFC 5321 §4.5.3.1), read to its end
//!   even when too long, with its line ending reported.
//! - [`read_data`]: a message after `DATA`: dot-unstuffing, the lone `.`,
//!   line and size limits.
//! - [`parse`]: a command line into a [`Command`], or a [`ParseError`] that
//!   knows its reply (500 5.5.2 unknown verb, 501 5.5.4 bad syntax).
//! - [`Reply`]: code, enhanced status code (RFC 3463) and text lines; written
//!   with [`Reply::to_wire`], read with [`read_reply`].
//! - [`Capabilities`]: the keywords of an EHLO reply.
//!
//! [`AsyncBufRead`]: tokio::io::AsyncBufRead

mod capabilities;
mod command;
mod data;
mod line;
mod reply;

pub use capabilities::Capabilities;
pub use command::{Command, Param, ParseError, Path, parse};
pub use data::{Body, BodyFault, Data, DataLimits, Endings, header_section, read_data};
pub use line::{Ending, Line, MAX_COMMAND_LINE, MAX_REPLY_LINE, MAX_TEXT_LINE, read_line};
pub use reply::{Reply, ReplyError, read_reply};
