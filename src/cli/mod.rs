//! The `mailvault` command line: arguments, commands, printing, progress.
//! Commands fill an options value, call one library function and print what
//! it returns; nothing here decides anything the library should.

pub mod args;
pub mod cmd;
pub mod mail;
pub mod printer;
pub mod progress;
pub mod report;
