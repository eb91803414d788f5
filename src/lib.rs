//! The RPC crate: everything generated from `idl/` at build time, and what it needs at run time.
//!
//! # Layout
//! - One module per Thrift namespace (`music::service::user`, `music::base`): pilota's types,
//!   the Volo server and client of each service, and beside each service a module named after
//!   it (`user_service`) with `serve`, `client`, its `ROUTES` and one `Endpoint` per route.
//! - [`ROUTES`], [`visit_routes`], [`OPENAPI_JSON`]: the whole HTTP API, for the gateway.
//! - Re-exports of the crates generated code and services need, so a service depends on `rpc`
//!   alone.
//!
//! # A method added to the IDL must be implemented
//!
//! Every implementation of a service stops compiling until it has every method, and rustc
//! names the missing ones (`error[E0046]: not all trait items implemented, missing: `login`,
//! `get_user``):
//!
//! ```compile_fail,E0046
//! use rpc::{music::service::user::*, volo_thrift::ServerError};
//!
//! struct Partial;
//! impl UserService for Partial {
//!     async fn create_user(&self, _: CreateUserRequest) -> Result<CreateUserResponse, ServerError> {
//!         Ok(CreateUserResponse::default())
//!     }
//! }
//! ```
//!
//! The same implementation with every method compiles:
//!
//! ```
//! use rpc::{music::service::user::*, volo_thrift::ServerError};
//!
//! struct Complete;
//! impl UserService for Complete {
//!     async fn create_user(&self, _: CreateUserRequest) -> Result<CreateUserResponse, ServerError> {
//!         Ok(CreateUserResponse::default())
//!     }
//!     async fn login(&self, _: LoginRequest) -> Result<LoginResponse, ServerError> {
//!         Ok(LoginResponse::default())
//!     }
//!     async fn get_user(&self, _: GetUserRequest) -> Result<GetUserResponse, ServerError> {
//!         Ok(GetUserResponse::default())
//!     }
//! }
//! ```

// Generated code, fenced: volo's codec uses `unsafe`, and the lint exceptions stay here.
#[allow(unsafe_code)]
mod r#gen {
    include!(concat!(env!("OUT_DIR"), "/volo_gen.rs"));
}
pub use r#gen::volo_gen::*;

include!(concat!(env!("OUT_DIR"), "/idlgen.rs"));

pub use idlgen_runtime as runtime;
pub use {pilota, volo, volo_etcd, volo_thrift};

/// The number an `ErrCode` travels as: `BaseResp.status_code` and the gateway's `code`.
impl From<music::base::ErrCode> for i64 {
    fn from(code: music::base::ErrCode) -> i64 {
        i64::from(code.inner())
    }
}
