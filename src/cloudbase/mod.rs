//! The CloudBase auth API client: the only code that sends HTTP to CloudBase.
//! [`client`] has one method per endpoint, [`types`] the bodies, [`error`] the typed errors.

pub mod client;
pub mod error;
pub mod types;

pub use client::{CallContext, ClientSettings, CloudBaseClient};
pub use error::{ApiError, CloudBaseError, TransportKind};
