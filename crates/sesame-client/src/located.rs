//! The two ways a file Sesame reads can fail, shared by every reader (the
//! daemon's config, knockd and fwknop imports, one-time sequence files,
//! client profiles and key files), so that each error says the same thing
//! the same way.

use std::fmt;

/// A file could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot read {what}: {source}")]
pub struct ReadError {
    /// The file.
    pub path: String,
    /// What the file is, e.g. `knockd config`.
    pub what: &'static str,
    /// The OS error.
    pub source: std::io::Error,
}

impl ReadError {
    /// A reader's error for `path`, for `map_err`.
    pub fn of(path: &std::path::Path, what: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.display().to_string();
        move |source| ReadError { path, what, source }
    }
}

/// An item of a file is not acceptable: where it is, what it is, and why.
/// Shown as `path:line:column: item: message` (no column when unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Located {
    /// The file.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, where known.
    pub column: Option<usize>,
    /// The offending item, e.g. `door "ssh" sequence[1] "70x0"`.
    pub item: String,
    /// What is wrong with it (never key material).
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path, self.line)?;
        if let Some(c) = self.column {
            write!(f, ":{c}")?;
        }
        write!(f, ": {}: {}", self.item, self.message)
    }
}

/// Why a file could not be used, in the ways every reader shares. The
/// readers' own error types hold it as their `File` variant (see
/// [`file_error_conversions!`](crate::file_error_conversions)).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file is writable by others or owned by a stranger.
    #[error(transparent)]
    Permissions(#[from] crate::secure_file::WritableByOthers),
    /// The file could not be opened or read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// An item of the file is not acceptable.
    #[error(transparent)]
    Invalid(#[from] Located),
}

/// `From` each of [`FileError`]'s causes for an error type whose `File`
/// variant holds a [`FileError`], so that `?` works on all of them.
#[macro_export]
macro_rules! file_error_conversions {
    ($error:ty) => {
        impl From<$crate::located::FileError> for $error {
            fn from(e: $crate::located::FileError) -> Self {
                Self::File(e)
            }
        }
        impl From<$crate::secure_file::WritableByOthers> for $error {
            fn from(e: $crate::secure_file::WritableByOthers) -> Self {
                Self::File(e.into())
            }
        }
        impl From<$crate::located::ReadError> for $error {
            fn from(e: $crate::located::ReadError) -> Self {
                Self::File(e.into())
            }
        }
        impl From<$crate::located::Located> for $error {
            fn from(e: $crate::located::Located) -> Self {
                Self::File(e.into())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn located_errors_name_file_line_column_and_item() {
        let mut e = Located {
            path: "/etc/knockd.conf".into(),
            line: 7,
            column: None,
            item: "[openSSH] Sequence".into(),
            message: "expected a port".into(),
        };
        assert_eq!(
            e.to_string(),
            "/etc/knockd.conf:7: [openSSH] Sequence: expected a port"
        );
        e.column = Some(3);
        assert_eq!(
            e.to_string(),
            "/etc/knockd.conf:7:3: [openSSH] Sequence: expected a port"
        );
        let r =
            ReadError::of(std::path::Path::new("/x"), "key file")(std::io::Error::other("gone"));
        assert_eq!(r.to_string(), "/x: cannot read key file: gone");
    }
}
