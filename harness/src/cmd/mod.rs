//! One module per subcommand.

pub mod bench;
pub mod compare;
pub mod grade;
pub mod prompt;
pub mod report;
pub mod run;
pub mod run_args;
pub mod tasks;
pub mod train;
pub mod train_args;

use benchmarks::DataSource;

use crate::cli::DataArgs;

impl DataArgs {
    /// The data source these flags select.
    pub fn source(&self) -> DataSource {
        match &self.data_dir {
            Some(dir) => DataSource::Dir(dir.clone()),
            None => DataSource::Embedded,
        }
    }
}
