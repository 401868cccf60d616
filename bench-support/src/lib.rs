//! What the ctx crates' benches and instruction-count harnesses share, in a crate of its
//! own (not published) so that every published crate builds from its own files.

mod interleaved;
mod yields;

pub use interleaved::interleaved;
pub use yields::{Yields, drive};
