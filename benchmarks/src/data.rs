//! The vendored data files: their bytes (embedded in the binary, so any copy of the binary
//! works with no network and no checkout), their checksums, and record iteration that
//! reports the file and line of anything malformed.
//!
//! The files are the ones listed in `benchmarks/data/SOURCES.md`, gzip-compressed; the
//! checksums are those of the uncompressed files as SOURCES.md lists them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::error::{BenchError, Result};

/// Environment variable that points the loader at a directory of data files to use instead
/// of the embedded copies (same relative names, plain or `.gz`).
pub const DATA_DIR_ENV: &str = "HARNESS_DATA_DIR";

/// One vendored file: its name relative to the data directory, its compressed bytes and
/// the sha256 of its uncompressed content.
pub(crate) struct DataFile {
    pub name: &'static str,
    gz: &'static [u8],
    sha256: &'static str,
}

macro_rules! vendored {
    ($name:literal, $sha:literal) => {
        DataFile {
            name: $name,
            gz: include_bytes!(concat!("../data/", $name, ".gz")),
            sha256: $sha,
        }
    };
}

pub(crate) static GSM8K_TRAIN: DataFile = vendored!(
    "gsm8k/train.jsonl",
    "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"
);
pub(crate) static GSM8K_TEST: DataFile = vendored!(
    "gsm8k/test.jsonl",
    "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
);
pub(crate) static MATH_TRAIN: DataFile = vendored!(
    "math/train.jsonl",
    "00aa30008a611172529ab775ed6f3af9efd32974625b19181c3ebfc724134e52"
);
pub(crate) static MATH_TEST: DataFile = vendored!(
    "math/test.jsonl",
    "1b833f0f8869d7cb975debfe04f0697bd23455c388045ba9159e5046d37df5fa"
);
pub(crate) static MATH500_TEST: DataFile = vendored!(
    "math500/test.jsonl",
    "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132"
);
pub(crate) static CSQA_TRAIN: DataFile = vendored!(
    "csqa/train_rand_split.jsonl",
    "58ffa3c8472410e24b8c43f423d89c8a003d8284698a6ed7874355dedd09a2fb"
);
pub(crate) static CSQA_DEV: DataFile = vendored!(
    "csqa/dev_rand_split.jsonl",
    "3210497fdaae614ac085d9eb873dd7f4d49b6f965a93adadc803e1229fd8a02a"
);
pub(crate) static MBPP: DataFile = vendored!(
    "mbpp/mbpp.jsonl",
    "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f"
);
pub(crate) static SVAMP: DataFile = vendored!(
    "svamp/SVAMP.json",
    "5be77703a6d891ae476d7c082787ad361392aa02453b132516cdd5f4e7934e3e"
);

/// Where data files are read from.
#[derive(Debug, Clone, Default)]
pub enum DataSource {
    /// The copies embedded in the binary (the default).
    #[default]
    Embedded,
    /// A directory laid out like `benchmarks/data/`, files plain or gzipped.
    Dir(PathBuf),
}

impl DataSource {
    /// The embedded copies, unless `HARNESS_DATA_DIR` names a directory.
    pub fn from_env() -> Self {
        match std::env::var_os(DATA_DIR_ENV) {
            Some(dir) if !dir.is_empty() => DataSource::Dir(PathBuf::from(dir)),
            _ => DataSource::Embedded,
        }
    }

    /// The uncompressed, checksum-verified bytes of a data file.
    pub(crate) fn read(&self, file: &DataFile) -> Result<Vec<u8>> {
        let bytes = match self {
            DataSource::Embedded => gunzip(file.gz, Path::new(file.name))?,
            DataSource::Dir(dir) => {
                let plain = dir.join(file.name);
                let gz = dir.join(format!("{}.gz", file.name));
                if plain.exists() {
                    std::fs::read(&plain).map_err(|e| BenchError::io(&plain, e))?
                } else {
                    let raw = std::fs::read(&gz).map_err(|e| BenchError::io(&gz, e))?;
                    gunzip(&raw, &gz)?
                }
            }
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != file.sha256 {
            return Err(BenchError::Checksum {
                file: self.display_name(file),
                expected: file.sha256.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// How a file of this source is named in error messages.
    pub(crate) fn display_name(&self, file: &DataFile) -> String {
        match self {
            DataSource::Embedded => format!("benchmarks/data/{} (embedded)", file.name),
            DataSource::Dir(dir) => dir.join(file.name).display().to_string(),
        }
    }
}

fn gunzip(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| BenchError::io(path, e))?;
    Ok(out)
}

/// A parsed record with the 1-based line it starts on, for error messages.
pub(crate) struct Record {
    pub file: Arc<str>,
    pub line: usize,
    pub value: Value,
}

/// The records of a JSON Lines file (blank lines skipped).
pub(crate) fn jsonl_records(file: &str, bytes: &[u8]) -> Result<Vec<Record>> {
    let name: Arc<str> = Arc::from(file);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| BenchError::record(file, 0, "-", format!("not UTF-8: {e}")))?;
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line)
            .map_err(|e| BenchError::record(file, index + 1, "-", format!("invalid JSON: {e}")))?;
        records.push(Record {
            file: name.clone(),
            line: index + 1,
            value,
        });
    }
    Ok(records)
}

/// The elements of a file holding one JSON array, each with the line it starts on.
pub(crate) fn json_array_records(file: &str, bytes: &[u8]) -> Result<Vec<Record>> {
    let name: Arc<str> = Arc::from(file);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| BenchError::record(file, 0, "-", format!("not UTF-8: {e}")))?;
    let raw: Vec<&RawValue> = serde_json::from_str(text)
        .map_err(|e| BenchError::record(file, e.line(), "-", format!("invalid JSON array: {e}")))?;
    raw.into_iter()
        .map(|element| {
            // RawValue borrows from `text`, so its offset gives the line it starts on.
            let offset = element.get().as_ptr() as usize - text.as_ptr() as usize;
            let line = text[..offset].matches('\n').count() + 1;
            let value = serde_json::from_str(element.get())
                .map_err(|e| BenchError::record(file, line, "-", e.to_string()))?;
            Ok(Record {
                file: name.clone(),
                line,
                value,
            })
        })
        .collect()
}

impl Record {
    fn field(&self, path: &str) -> Result<&Value> {
        let mut value = &self.value;
        for key in path.split('.') {
            value = value
                .get(key)
                .ok_or_else(|| BenchError::record(&self.file, self.line, path, "missing"))?;
        }
        Ok(value)
    }

    /// A string field (`a.b` for nested objects).
    pub fn str(&self, path: &str) -> Result<String> {
        match self.field(path)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.error(path, format!("expected a string, found {other}"))),
        }
    }

    /// A field holding an integer.
    pub fn int(&self, path: &str) -> Result<i64> {
        self.field(path)?
            .as_i64()
            .ok_or_else(|| self.error(path, "expected an integer"))
    }

    /// A number field kept in its exact textual form (`51.0`), never through f64 rounding.
    pub fn number_text(&self, path: &str) -> Result<String> {
        match self.field(path)? {
            Value::Number(n) => Ok(n.to_string()),
            other => Err(self.error(path, format!("expected a number, found {other}"))),
        }
    }

    /// An array-of-strings field.
    pub fn str_list(&self, path: &str) -> Result<Vec<String>> {
        let Value::Array(items) = self.field(path)? else {
            return Err(self.error(path, "expected an array of strings"));
        };
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.error(path, "expected an array of strings"))
            })
            .collect()
    }

    /// An array field.
    pub fn list(&self, path: &str) -> Result<&Vec<Value>> {
        self.field(path)?
            .as_array()
            .ok_or_else(|| self.error(path, "expected an array"))
    }

    /// An error about a field of this record.
    pub fn error(&self, field: &str, message: impl Into<String>) -> BenchError {
        BenchError::record(&self.file, self.line, field, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_matches_its_checksum() {
        for file in [
            &GSM8K_TRAIN,
            &GSM8K_TEST,
            &MATH_TRAIN,
            &MATH_TEST,
            &MATH500_TEST,
            &CSQA_TRAIN,
            &CSQA_DEV,
            &MBPP,
            &SVAMP,
        ] {
            DataSource::Embedded.read(file).unwrap();
        }
    }

    #[test]
    fn a_replaced_file_fails_its_checksum_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("gsm8k")).unwrap();
        std::fs::write(dir.path().join("gsm8k/test.jsonl"), b"{}\n").unwrap();
        let err = DataSource::Dir(dir.path().into())
            .read(&GSM8K_TEST)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gsm8k/test.jsonl"), "{err}");
        assert!(err.contains("sha256"), "{err}");
    }

    #[test]
    fn malformed_jsonl_names_file_and_line() {
        let err = jsonl_records("x.jsonl", b"{\"a\": 1}\n\n{oops\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("x.jsonl:3:"), "{err}");
    }

    #[test]
    fn missing_or_mistyped_field_names_file_line_and_field() {
        let records = jsonl_records("x.jsonl", b"{\"q\": {\"stem\": 3}}\n").unwrap();
        let err = records[0].str("q.stem").unwrap_err().to_string();
        assert!(err.starts_with("x.jsonl:1: field `q.stem`"), "{err}");
        let err = records[0].str("answer").unwrap_err().to_string();
        assert!(err.contains("field `answer`: missing"), "{err}");
    }

    #[test]
    fn json_array_elements_know_their_line() {
        let records =
            json_array_records("a.json", b"[\n  {\"x\": 1},\n  {\n \"x\": 2}\n]").unwrap();
        assert_eq!(records[0].line, 2);
        assert_eq!(records[1].line, 3);
    }
}
