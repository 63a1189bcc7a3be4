//! Workspace files: the jail every path from a client goes through, and the `/api/files/*`
//! routes. Each caller works in their own workspace only.

pub mod jail;
pub mod routes;

pub use routes::router;

use crate::error::AppError;
use jail::FileError;

impl From<FileError> for AppError {
    fn from(err: FileError) -> Self {
        let message = err.to_string();
        match err {
            FileError::BadPath(_) => AppError::BadRequest(message),
            FileError::NotFound(_) => AppError::NotFound(message),
            FileError::Outside(_) => AppError::Forbidden(message),
            FileError::Exists(_)
            | FileError::IsDirectory(_)
            | FileError::NotRegular(_)
            | FileError::NotDirectory(_)
            | FileError::NotEmpty(_)
            | FileError::Changed { .. } => AppError::Conflict(message),
            FileError::TooLarge { .. } => AppError::PayloadTooLarge(message),
            FileError::Binary(_) => AppError::UnsupportedMediaType(message),
            FileError::Denied(_) => AppError::Forbidden(message),
            FileError::NoSpace(_) => AppError::InsufficientStorage(message),
            FileError::TooDeep(_) => AppError::Unprocessable(message),
            FileError::Io(io)
                if matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
            {
                AppError::InsufficientStorage(
                    "there is no space left for this (the disk or the account's quota is full); nothing was changed"
                        .into(),
                )
            }
            FileError::Io(io) => AppError::Internal(io.into()),
        }
    }
}
