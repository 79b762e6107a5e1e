//! Open and recovery: list and replay the chunks, repair a torn tail, start the writer.

mod footer;
mod open;
mod replay;
mod resume;
mod runs;

pub(crate) use open::open;
