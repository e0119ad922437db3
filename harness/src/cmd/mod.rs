//! One module per subcommand: each turns its flags into calls to the modules below (the loop
//! is `study`). Nothing imports from here but `main`.

pub mod bench;
pub mod compare;
pub mod grade;
pub mod prompt;
pub mod report;
pub mod run;
pub mod tasks;
pub mod train;
