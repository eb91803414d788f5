//! idlgen: Thrift IDL in, everything a Volo service and its HTTP gateway need out, at build time
//! (what Kitex codegen and hz do for Go).
//!
//! # Layout
//! - [`idl`]: the IDL as one resolved model (pilota-thrift-parser, includes, types, annotations).
//! - [`api`]: the HTTP API the annotations declare (routes, bindings, auth) and its checks.
//! - [`vd`]: the `api.vd` validation language, compiled to Rust.
//! - [`diag`]: `file:line:col` diagnostics.
//! - [`codegen`]: the pilota plugin that writes validation, envelopes, endpoints and the
//!   etcd registry glue beside pilota's stubs.
//! - [`openapi`]: the OpenAPI 3.1 document of the routes.
//! - [`generate()`]: one run of all of it; [`build`] is what a build script calls.
//! - [`scaffold`]: `idlgen new-service`.
//!
//! ```no_run
//! // The whole build.rs of a crate that compiles `idl/*.thrift`:
//! idlgen::build("idl");
//! ```

pub mod api;
pub mod codegen;
pub mod diag;
pub mod generate;
pub mod idl;
pub mod openapi;
pub mod scaffold;
pub mod vd;

pub use generate::{build, build_lines, generate};
